"""`derain-score`: the papers' MATLAB scoring script in Python — mean PSNR/SSIM of two folders.

    derain-score pred=results/Rain100L gt=data/Rain100L/target
    derain-score pred=... gt=... output=scores/Rain100L        # + scores.csv and scores.json
    derain-score pred=... gt=... channel=rgb rounded_y=false

The task is `derain.evaluation.scoring.run` (files paired by name; docs/protocol.md).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from derain.cli import make_console, refuse_renamed, run_task
from derain.evaluation.scoring import run
from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="score")
def _app(cfg: DictConfig) -> None:
    run_task("score", run, cfg, make_console())


def main() -> None:
    refuse_renamed("score")
    _app()


if __name__ == "__main__":
    main()

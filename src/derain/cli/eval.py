"""`derain-eval`: score a checkpoint on every test set of a data config (papers' protocol).

derain-eval ckpt_path=logs/train/runs/RUN/checkpoints/last.ckpt [data=rain13k data.root=...]

The task is `derain.evaluation.evaluate.run`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from derain.cli import refuse_renamed, run_task
from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="eval")
def _app(cfg: DictConfig) -> None:
    from derain.evaluation.evaluate import run  # Lightning loads after the config is read

    result = run_task("eval", run, cfg)
    for kind, path in result["paths"].items():
        print(f"{kind:>8}: {path}")


def main() -> None:
    refuse_renamed("eval")
    _app()


if __name__ == "__main__":
    main()

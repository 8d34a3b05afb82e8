"""`derain-predict`: derain real photos — an image, a folder (optionally recursive) or a glob.

    derain-predict ckpt_path=model.ckpt input=photos/ output=derained/
    derain-predict ckpt_path=model.ckpt input='shots/**/*.jpg' output=out/ format=jpg
    derain-predict ckpt_path=... input=... output=... self_ensemble=true save_rain=true

The task is `derain.inference.predict.run`; the exit code is 1 if any image failed.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from derain.cli import make_console, refuse_renamed, run_task
from derain.inference.predict import print_summary, run
from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="predict")
def _app(cfg: DictConfig) -> None:
    console = make_console()
    summary = run_task("predict", run, cfg, console)
    print_summary(summary, console)
    if summary.failed:
        sys.exit(1)


def main() -> None:
    refuse_renamed("predict")
    _app()


if __name__ == "__main__":
    main()

"""`derain-demo`: a local web page that derains uploaded photos.

    derain-demo ckpt_path=logs/demo/runs/RUN/checkpoints/last.ckpt
    derain-demo ckpt_path=model.safetensors host=127.0.0.1 port=7860

The task is `derain.webapp.demo.run`: it serves until Ctrl+C (or SIGTERM).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig
from rich.console import Console

from derain.cli import refuse_renamed, run_task
from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="demo")
def _app(cfg: DictConfig) -> None:
    from derain.webapp.demo import run

    errors = (FileNotFoundError, ValueError, OSError)
    run_task("demo", run, cfg, Console(soft_wrap=True), errors=errors)


def main() -> None:
    refuse_renamed("demo")
    _app()


if __name__ == "__main__":
    main()

"""`derain-convert`: a checkpoint as a derain checkpoint file or a model folder.

    derain-convert authors=model_best.pth output=elf_authors.ckpt
    derain-convert ckpt_path=logs/.../last.ckpt output=my-model card=CARD.md

The task is `derain.inference.convert.run`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from derain.cli import make_console, refuse_renamed, run_task
from derain.inference.convert import run
from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="convert")
def _app(cfg: DictConfig) -> None:
    run_task("convert", run, cfg, make_console())


def main() -> None:
    refuse_renamed("convert")
    _app()


if __name__ == "__main__":
    main()

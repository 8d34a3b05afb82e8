"""`derain-export`: a checkpoint's network as an ONNX or TorchScript file for deployment.

    derain-export ckpt_path=model.ckpt format=onnx output=elf.onnx
    derain-export ckpt_path=model.ckpt format=torchscript output=elf.pt

The task is `derain.inference.export.run`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from derain.cli import make_console, refuse_renamed, run_task
from derain.inference.export import run
from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="export")
def _app(cfg: DictConfig) -> None:
    errors = (FileNotFoundError, ValueError, ImportError)
    run_task("export", run, cfg, make_console(), errors=errors)


def main() -> None:
    refuse_renamed("export")
    _app()


if __name__ == "__main__":
    main()

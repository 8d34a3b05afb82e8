"""`derain-export`: a checkpoint's network as an ONNX or TorchScript file for deployment.

    derain-export ckpt_path=model.ckpt format=onnx out=elf.onnx
    derain-export ckpt_path=model.ckpt format=torchscript out=elf.pt

The file maps B×3×H×W RGB in [0, 1] to the restored image of the same shape, for any batch and
any size from 9×9 (see `derain.inference.export`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from derain.cli import make_console
from derain.inference import load_model
from derain.inference.export import EXPORT_FORMATS, export, export_difference
from derain.inference.sources import WEIGHTS_FILE, resolve_model
from derain.paths import config_dir

_DEFAULT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
_TOLERANCE = 1e-4  # float32 reordering between runtimes stays far below this


def run(cfg: DictConfig, console: Console) -> Path:
    """Exports `cfg.ckpt_path` as `cfg.format` to `cfg.out` (see conf/export.yaml); returns the file."""
    if cfg.format not in EXPORT_FORMATS:
        raise ValueError(f"format={cfg.format} is not one of {', '.join(EXPORT_FORMATS)}")
    checkpoint = resolve_model(cfg.ckpt_path)
    model = load_model(checkpoint)
    if cfg.out:
        out = Path(cfg.out)
    elif checkpoint.name == WEIGHTS_FILE:  # a named model or folder: not into the package
        out = Path(checkpoint.parent.name + _DEFAULT_SUFFIXES[cfg.format])
    else:
        out = checkpoint.with_suffix(_DEFAULT_SUFFIXES[cfg.format])
    options = {"opset": cfg.opset, "dynamo": cfg.dynamo} if cfg.format == "onnx" else {}
    with console.status(f"exporting {checkpoint} as {cfg.format}"):
        export(model, out, cfg.format, **options)
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", highlight=False)
    if cfg.verify:
        difference = export_difference(out, model)
        verdict = "ok" if difference <= _TOLERANCE else "[bold red]above tolerance[/]"
        console.print(
            f"max |{cfg.format} − PyTorch| on 37×61 and 64×80 images: {difference:.2e} "
            f"({verdict}, tolerance {_TOLERANCE:.0e})",
            highlight=False,
        )
    return out


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="export")
def _app(cfg: DictConfig) -> None:
    try:
        run(cfg, make_console())
    except (FileNotFoundError, ValueError, ImportError) as err:
        # the message names the file or setting and the fix; a traceback would only bury it
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]derain-export: error:[/] {escape(str(err))}", highlight=False
        )
        sys.exit(1)


def main() -> None:
    _app()


if __name__ == "__main__":
    main()

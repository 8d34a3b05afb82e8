"""`derain-convert`: the authors' published checkpoint as a derain checkpoint.

    derain-convert authors=model_best.pth out=elf_authors.ckpt

Reads the authors' state dict (or the dict their training script saves) without running code,
checks every tensor's name and shape (see `derain.models.from_authors`) and writes a `.ckpt` or
`.safetensors` file that derain-eval, derain-predict, derain-export and `derain.load` accept.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape

from derain.cli import make_console
from derain.inference import elf_arguments, save_checkpoint
from derain.models import from_authors
from derain.paths import config_dir

_SUFFIXES = (".ckpt", ".safetensors")


def run(cfg: DictConfig, console: Console) -> Path:
    """Converts `cfg.authors` into `cfg.out` (see conf/convert.yaml); returns the file written."""
    for key in ("authors", "out"):
        if OmegaConf.is_missing(cfg, key):
            raise ValueError(
                f"{key}= is required: derain-convert authors=CHECKPOINT.pth out=MODEL.ckpt"
            )
    out = Path(cfg.out)
    if out.suffix not in _SUFFIXES:
        raise ValueError(f"out={out}: the file name must end in {' or '.join(_SUFFIXES)}")
    if out.exists() and not cfg.overwrite:
        raise ValueError(f"out={out} exists: choose another name, or pass overwrite=true")
    with console.status(f"reading {cfg.authors}"):
        model = from_authors(cfg.authors)
    save_checkpoint(model, out)
    arguments = elf_arguments(model)
    parameters = sum(p.numel() for p in model.parameters())
    console.print(
        f"wrote {out}: width {arguments['width']}, depth {arguments['depth']}, "
        f"{parameters:,} parameters, head {arguments['head']}",
        highlight=False,
    )
    return out


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="convert")
def _app(cfg: DictConfig) -> None:
    try:
        run(cfg, make_console())
    except (FileNotFoundError, ValueError) as err:
        # the message names the file or tensor and the fix; a traceback would only bury it
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]derain-convert: error:[/] {escape(str(err))}", highlight=False
        )
        sys.exit(1)


def main() -> None:
    _app()


if __name__ == "__main__":
    main()

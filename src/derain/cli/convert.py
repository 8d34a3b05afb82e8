"""`derain-convert`: a checkpoint as a derain checkpoint file or a model folder.

    derain-convert authors=model_best.pth out=elf_authors.ckpt
    derain-convert ckpt=logs/.../last.ckpt out=my-model card=CARD.md

Reads the authors' state dict (or the dict their training script saves), or any model derain
loads (`ckpt=`), without running code, checks every tensor's name and shape (see
`derain.models.from_authors`) and writes a `.ckpt` or `.safetensors` file, or a model folder
(the Hugging Face Hub's layout: weights, config.json and a model card), that derain-eval,
derain-predict, derain-export and `derain.load` accept.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape

from derain.cli import make_console
from derain.inference import (
    StoredNetwork,
    elf_arguments,
    load_network,
    save_checkpoint,
    save_pretrained,
)
from derain.inference.tiling import check_max_tile
from derain.models import from_authors
from derain.paths import config_dir

_SUFFIXES = (".ckpt", ".safetensors")


def run(cfg: DictConfig, console: Console) -> Path:
    """Converts `cfg.authors` or `cfg.ckpt` into `cfg.out` (see conf/convert.yaml); returns the
    file or folder written."""
    if OmegaConf.is_missing(cfg, "out"):
        raise ValueError("out= is required: derain-convert authors=CHECKPOINT.pth out=MODEL.ckpt")
    if (cfg.authors is None) == (cfg.ckpt is None):
        raise ValueError(
            "give one of authors= (the authors' checkpoint) or ckpt= (a derain checkpoint or "
            "model), e.g. derain-convert authors=model_best.pth out=MODEL.ckpt"
        )
    out = Path(cfg.out)
    folder = out.suffix == ""
    if not folder and out.suffix not in _SUFFIXES:
        raise ValueError(
            f"out={out}: the file name must end in {' or '.join(_SUFFIXES)}, or have no suffix "
            "for a model folder"
        )
    if out.exists() and not cfg.overwrite:
        raise ValueError(f"out={out} exists: choose another name, or pass overwrite=true")
    source = cfg.authors or cfg.ckpt
    card = _card_text(cfg.card, source) if folder else None
    with console.status(f"reading {source}"):
        # the authors' checkpoints carry no max_tile
        stored = (
            StoredNetwork(from_authors(cfg.authors), {}, {})
            if cfg.authors
            else load_network(cfg.ckpt)
        )
    model = stored.model
    max_tile = check_max_tile(stored.chosen_max_tile(cfg.get("max_tile", "model")))
    if folder:
        save_pretrained(model, out, card, overwrite=cfg.overwrite, max_tile=max_tile)
    else:
        save_checkpoint(model, out, max_tile=max_tile)
    arguments = elf_arguments(model)
    parameters = sum(p.numel() for p in model.parameters())
    console.print(
        f"wrote {out}: width {arguments['width']}, depth {arguments['depth']}, "
        f"{parameters:,} parameters, head {arguments['head']}"
        + (f", max_tile {max_tile}" if max_tile else ""),
        highlight=False,
    )
    return out


def _card_text(card: str | None, source: str) -> str:
    """The model card: the file `card` names, else a stub saying where the weights came from."""
    if card is not None:
        path = Path(card)
        if not path.is_file():
            raise FileNotFoundError(f"card={card} does not exist: give a Markdown file")
        return path.read_text(encoding="utf-8")
    return (
        "---\nlibrary_name: derain\ntags: [image-restoration, deraining]\n---\n\n"
        f"# ELF deraining model\n\nConverted from `{Path(source).name}` by derain-convert. "
        "Describe its training data, scores and limits here.\n"
    )


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

"""The convert task behind `derain-convert`: a checkpoint (the authors' or any model derain loads)
as a derain checkpoint file or a model folder, from a config (conf/convert.yaml).

Reads the authors' state dict (or the dict their training script saves), or any model derain
loads (`ckpt_path=`), without running code, checks every tensor's name and shape (see
`derain.models.from_authors`) and writes a `.ckpt` or `.safetensors` file, or a model folder
(the Hugging Face Hub's layout: weights, config.json and a model card), that derain-eval,
derain-predict, derain-export and `derain.load` accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from derain.inference.checkpoint import (
    StoredNetwork,
    elf_arguments,
    load_network,
    save_checkpoint,
    save_pretrained,
)
from derain.inference.settings import InferenceSettings
from derain.inference.tiling import check_max_tile
from derain.models import from_authors
from derain.runtime.console import make_console

_SUFFIXES = (".ckpt", ".safetensors")


@dataclass(frozen=True)
class Converted:
    """What `run` wrote: `output` (file or folder) holding a network of `width`, `depth`,
    `parameters` and `head`, whose max_tile is `max_tile` (None: no limit)."""

    output: Path
    width: int
    depth: int
    parameters: int
    head: str
    max_tile: int | None


def run(cfg: DictConfig, console: Console | None = None) -> Converted:
    """Converts `cfg.authors` or `cfg.ckpt_path` into `cfg.output` (see conf/convert.yaml)."""
    console = console or make_console()
    settings = InferenceSettings.from_config(cfg)
    settings.check_applies(("ckpt_path", "max_tile"), "derain-convert (it runs no network)")
    if OmegaConf.is_missing(cfg, "output"):
        raise ValueError(
            "output= is required: derain-convert authors=CHECKPOINT.pth output=MODEL.ckpt"
        )
    if (cfg.authors is None) == (settings.ckpt_path is None):
        raise ValueError(
            "give one of authors= (the authors' checkpoint) or ckpt_path= (a derain checkpoint "
            "or model), e.g. derain-convert authors=model_best.pth output=MODEL.ckpt"
        )
    out = Path(cfg.output)
    folder = out.suffix == ""
    if not folder and out.suffix not in _SUFFIXES:
        raise ValueError(
            f"output={out}: the file name must end in {' or '.join(_SUFFIXES)}, or have no "
            "suffix for a model folder"
        )
    if out.exists() and not cfg.overwrite:
        raise ValueError(f"output={out} exists: choose another name, or pass overwrite=true")
    source = cfg.authors or settings.ckpt_path
    card = _card_text(cfg.card, source) if folder else None
    with console.status(f"reading {source}"):
        # the authors' checkpoints carry no max_tile
        stored = (
            StoredNetwork(from_authors(cfg.authors), {}, {})
            if cfg.authors
            else load_network(settings.ckpt_path)
        )
    model = stored.model
    max_tile = check_max_tile(stored.chosen_max_tile(settings.max_tile))
    if folder:
        save_pretrained(model, out, card, overwrite=cfg.overwrite, max_tile=max_tile)
    else:
        save_checkpoint(model, out, max_tile=max_tile)
    arguments = elf_arguments(model)
    result = Converted(
        out,
        arguments["width"],
        arguments["depth"],
        sum(p.numel() for p in model.parameters()),
        arguments["head"],
        max_tile,
    )
    console.print(
        f"wrote {out}: width {result.width}, depth {result.depth}, "
        f"{result.parameters:,} parameters, head {result.head}"
        + (f", max_tile {max_tile}" if max_tile else ""),
        highlight=False,
    )
    return result


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

"""Where a network comes from: a short name of a model bundled with the package, a model folder
(the Hugging Face Hub's layout), a derain checkpoint, or one of the authors' checkpoints.

A model folder holds `model.safetensors` (weights, and the network's config in its metadata),
`config.json` (the same config, for the Hub's listing) and `README.md` (the model card). The
bundled models are such folders under `derain/weights/`; a folder downloaded from the Hub, e.g.
`huggingface_hub.snapshot_download("user/derain-model")`, loads the same way. Reading and
writing the files is `derain.inference.checkpoint`'s (`load_network`, `save_pretrained`).
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
"""Where the bundled model folders live inside the installed package."""

DEFAULT_MODEL = "default"
"""The model used when none is named."""

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"

ModelSource = str | os.PathLike | None


def bundled_models() -> dict[str, Path]:
    """Short name → folder of every model that ships inside the package."""
    if not WEIGHTS_DIR.is_dir():
        return {}
    return {
        folder.name: folder
        for folder in sorted(WEIGHTS_DIR.iterdir())
        if (folder / WEIGHTS_FILE).is_file()
    }


def resolve_model(source: ModelSource = None) -> Path:
    """The weights file that `source` names.

    Args:
        source: None (the bundled default model), a bundled model's short name, a model folder
            (`model.safetensors` inside), or a checkpoint file (derain `.ckpt`/`.safetensors`,
            or the authors' `.pth`).

    Raises:
        FileNotFoundError: nothing by that name or path; the message lists the bundled names.
    """
    name = DEFAULT_MODEL if source is None else os.fspath(source)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / WEIGHTS_FILE).is_file():
            return path / WEIGHTS_FILE
        raise FileNotFoundError(
            f"model folder {path} has no {WEIGHTS_FILE}: expected {WEIGHTS_FILE}, {CONFIG_FILE} "
            f"and {CARD_FILE} (the layout derain-convert output=FOLDER writes)"
        )
    bundled = bundled_models()
    if name in bundled:
        return bundled[name] / WEIGHTS_FILE
    names = ", ".join(bundled) or "none in this installation"
    kinds = (
        f"a bundled model's name ({names}), a model folder, or a checkpoint file (.ckpt, "
        ".safetensors, or the authors' .pth)"
    )
    if path.suffix or len(path.parts) > 1:
        raise FileNotFoundError(f"checkpoint {path} does not exist: give ckpt_path= {kinds}")
    raise FileNotFoundError(f"no model {name!r}: give ckpt_path= {kinds}")


def model_name(weights: str | os.PathLike) -> str:
    """How a model is named to people: a model folder's name for its `model.safetensors` (the
    bundled `default`), else the file's name."""
    weights = Path(weights)
    return weights.parent.name if weights.name == WEIGHTS_FILE else weights.name


def model_title(weights: str | os.PathLike) -> str | None:
    """The title of the model card beside a model folder's `model.safetensors` (its first
    `# ` heading), or None when there is no card or it has no title."""
    card = Path(weights).parent / CARD_FILE
    if Path(weights).name != WEIGHTS_FILE or not card.is_file():
        return None
    for line in card.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("# "):
            return line[2:].strip() or None
    return None

"""Where a network comes from: a short name of a model bundled with the package, a model folder
(the Hugging Face Hub's layout), a derain checkpoint, or one of the authors' checkpoints.

A model folder holds `model.safetensors` (weights, and the network's config in its metadata),
`config.json` (the same config, for the Hub's listing) and `README.md` (the model card). The
bundled models are such folders under `derain/weights/`; a folder downloaded from the Hub, e.g.
`huggingface_hub.snapshot_download("user/derain-model")`, loads the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from derain.inference.checkpoint import CheckpointError, elf_arguments, load_model, save_safetensors
from derain.models import ELF
from derain.models.authors import AuthorsCheckpointError, from_authors

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
            f"and {CARD_FILE} (the layout derain-convert out=FOLDER writes)"
        )
    bundled = bundled_models()
    if name in bundled:
        return bundled[name] / WEIGHTS_FILE
    names = ", ".join(bundled) or "none in this installation"
    raise FileNotFoundError(
        f"no model {name!r}: give a bundled model's name ({names}), a model folder, or a "
        "checkpoint file (.ckpt, .safetensors, or the authors' .pth)"
    )


def open_model(source: ModelSource = None, device: str | torch.device = "cpu") -> ELF:
    """The network `source` names (see `resolve_model`), in eval mode on `device`.

    A file that is not a derain checkpoint is tried as one of the authors' (`from_authors`).

    Raises:
        FileNotFoundError: see `resolve_model`.
        CheckpointError: the file is neither; the message gives both reasons.
    """
    path = resolve_model(source)
    try:
        return load_model(path, device)
    except CheckpointError as derain_error:
        if path.suffix == ".safetensors":
            raise
        try:
            model = from_authors(path)
        except AuthorsCheckpointError as authors_error:
            raise CheckpointError(
                f"{path} is neither a derain checkpoint ({derain_error}) nor one of the authors' "
                f"({authors_error})"
            ) from None
        return model.to(device).eval()


def save_pretrained(
    model: ELF, folder: str | os.PathLike, card: str, overwrite: bool = False
) -> Path:
    """Writes `model` as a model folder: weights, config and the model card `card` (Markdown).

    The folder appears whole or not at all: it is written beside its destination and renamed.

    Raises:
        FileExistsError: `folder` exists and `overwrite` is False.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not overwrite:
        raise FileExistsError(
            f"{folder} already exists: choose another folder or pass overwrite=true"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_safetensors(model, staging / WEIGHTS_FILE)
        config = {"_target_": "derain.models.ELF", **elf_arguments(model)}
        (staging / CONFIG_FILE).write_text(
            json.dumps({"library_name": "derain", "model": config}, indent=1) + "\n",
            encoding="utf-8",
        )
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        # the old folder is moved aside, not deleted, until the new one is in place
        previous = folder.with_name(f".{folder.name}.previous") if folder.exists() else None
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
            folder.rename(previous)
        staging.rename(folder)
        if previous is not None:
            shutil.rmtree(previous)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder

"""Which network the web app serves: the checkpoint it was started with, else the bundled one."""

from __future__ import annotations

import os
from pathlib import Path

BUNDLED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "default.safetensors"
"""Where a default model shipped inside the package lives (`derain.inference.save_safetensors`
layout). None ships yet, so the app needs `ckpt_path=` until one does."""


def choose_checkpoint(ckpt_path: str | os.PathLike | None, bundled: Path = BUNDLED_WEIGHTS) -> Path:
    """The checkpoint to serve: `ckpt_path` when given, else the bundled weights.

    Raises:
        FileNotFoundError: `ckpt_path` does not exist, or none is given and no model is bundled;
            the message says what to pass.
    """
    if ckpt_path is not None:
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path={ckpt_path} does not exist: give a checkpoint from derain-train "
                "(.ckpt) or a .safetensors file"
            )
        return path
    if bundled.is_file():
        return bundled
    raise FileNotFoundError(
        "no model to serve: this installation bundles no default model, so start the app with "
        "a checkpoint, e.g. derain-demo ckpt_path=logs/demo/runs/RUN/checkpoints/last.ckpt "
        "(make train writes one)"
    )

"""What reading an image file needs in both the data files (`derain.data.io`) and the photo
files of inference (`derain.inference.photo_files`, `derain.inference.files`), which may not
import each other: which files are images, the EXIF orientation, and whether Pillow would cut a
16-bit colour image to 8 bits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
"""Suffixes (lower case) of the files treated as images; matching ignores case."""

EXIF_ORIENTATION_TAG = 0x0112


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a visible file whose suffix is in `IMAGE_EXTENSIONS` (any case).

    Hidden files (`.DS_Store`, `._photo.jpg` from macOS) are never images, whatever their suffix.
    """
    path = Path(path)
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


_TRANSFORMS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """An H×W×C array turned upright by its EXIF orientation (1–8), as Pillow's exif_transpose
    turns an image; other values leave it as it is."""
    transform = _TRANSFORMS.get(orientation)
    return array if transform is None else np.ascontiguousarray(transform(array))


def has_16bit_colour(image: Image.Image) -> bool:
    """A colour image stored with 16 bits per channel (Pillow would return only 8 of them);
    known from the header, before decoding."""
    if image.mode not in ("RGB", "RGBA") or not image.tile:
        return False
    args = image.tile[0].args
    raw_mode = args[0] if isinstance(args, tuple) and args else args
    return isinstance(raw_mode, str) and ";16" in raw_mode

"""EXIF orientation, shared by the data files (`derain.data.io`) and the photo files of
inference (`derain.inference.photo_files`), which may not import each other."""

from __future__ import annotations

import numpy as np

EXIF_ORIENTATION_TAG = 0x0112

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

"""The clean photographs bundled with scikit-image, split into train / val / test.

Only these ship inside the scikit-image wheel (other `skimage.data` images are downloaded on
first use). The split is by photograph, so no test scene is ever trained on: the two halves of
the stereo pair show one scene and therefore stay together in training.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
import skimage.data
from PIL import Image

Split = Literal["train", "val", "test"]

PHOTO_SPLITS: dict[str, tuple[str, ...]] = {
    # colour scenes plus the grey textures (turned RGB) for more varied training patches
    "train": (
        "astronaut",
        "stereo_motorcycle_left",
        "stereo_motorcycle_right",
        "camera",
        "brick",
        "grass",
        "gravel",
    ),
    "val": ("rocket",),
    "test": ("coffee", "chelsea"),
}
"""Photo names per split; no name appears in two splits."""


def photo_names(split: Split) -> tuple[str, ...]:
    """Names of the photos in `split` ("train", "val" or "test")."""
    try:
        return PHOTO_SPLITS[split]
    except KeyError:
        raise ValueError(
            f"unknown photo split {split!r}: expected one of {', '.join(PHOTO_SPLITS)}"
        ) from None


@cache
def load_photo(name: str) -> np.ndarray:
    """A bundled photo as an H×W×3 float32 array in [0, 1] (grey textures repeated to RGB).

    The array is shared between calls and read-only; copy it before writing into it.
    """
    if name.startswith("stereo_motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        pixels = left if name.endswith("left") else right
    elif name in _BUNDLED:
        pixels = getattr(skimage.data, name)()
    else:
        known = ", ".join(sorted({*_BUNDLED, "stereo_motorcycle_left", "stereo_motorcycle_right"}))
        raise ValueError(f"unknown bundled photo {name!r}: expected one of {known}")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    photo = pixels.astype(np.float32) / np.float32(255.0)
    photo.setflags(write=False)
    return photo


def fit_longest_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale an H×W×3 float image in [0, 1] so its longest side is at most `max_side`.

    Resampling is Lanczos on 8-bit levels, so the result stays 8-bit exact (k / 255 values).
    Images already small enough are returned unchanged.
    """
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    resized = Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float32) / np.float32(255.0)


def crop_around(image: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    """size×size crop of an H×W×C image centred near (row, col), moved inside the image.

    An image smaller than the crop is first reflect-padded at the bottom/right.
    """
    height, width = image.shape[:2]
    if height < size or width < size:
        pad_rows, pad_cols = max(0, size - height), max(0, size - width)
        image = np.pad(image, ((0, pad_rows), (0, pad_cols), (0, 0)), mode="reflect")
        height, width = image.shape[:2]
    top = int(np.clip(row - size // 2, 0, height - size))
    left = int(np.clip(col - size // 2, 0, width - size))
    return image[top : top + size, left : left + size]


_BUNDLED = ("astronaut", "chelsea", "coffee", "rocket", "camera", "brick", "grass", "gravel")

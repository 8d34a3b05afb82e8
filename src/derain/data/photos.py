"""Clean photographs that ship inside installed packages, split into train / extra / val / test.

"train", "val" and "test" are photos bundled with scikit-image (other `skimage.data` images are
downloaded on first use). "extra" adds every other photo-like image that ships with the
project's packages: more of scikit-image's (space, microscopy, grey scenes, printed text),
matplotlib's sample photo and the example photos of Gradio (the `demo` extra). The split is by
photograph, so no test scene is ever trained on: the two halves of the stereo pair show one
scene and therefore stay together in training. Name several splits with "+", e.g.
"train+extra".

Any folder of clean photos (DIV2K, Flickr2K, one's own collection) serves as well:
`folder_photos(path)` lists its photos (recursively; PNG, JPEG, TIFF, WebP, BMP, any size), and
`load_photo` takes such a file's path wherever it takes a bundled photo's name. Folder photos
keep their resolution (training cuts random crops from them); the most recently used ones stay
decoded in memory up to `PHOTO_CACHE_BYTES`.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import skimage.data
from PIL import Image

from derain.data.io import is_image_file, read_image, read_image_size

Split = Literal["train", "extra", "train+extra", "val", "test"]

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
    # everything else that ships with the installed packages and is not held out
    "extra": (
        "hubble_deep_field",
        "retina",
        "immunohistochemistry",
        "coins",
        "moon",
        "cell",
        "clock",
        "page",
        "text",
        "grace_hopper",
        "cheetah",
        "cheetah1",
        "cheetah2",
        "groot",
        "lion",
        "tower",
    ),
    "val": ("rocket",),
    "test": ("coffee", "chelsea"),
}
"""Photo names per split; no name appears in two splits."""


MAX_PHOTO_SIDE = 1000
"""Larger photos are downscaled to this longest side when loaded (only retina, 1411²)."""


def photo_names(split: Split) -> tuple[str, ...]:
    """Names of the photos in `split` ("train", "extra", "val", "test", or several joined by
    "+", e.g. "train+extra")."""
    names: list[str] = []
    for part in split.split("+"):
        try:
            names.extend(PHOTO_SPLITS[part])
        except KeyError:
            raise ValueError(
                f"unknown photo split {part!r} in {split!r}: expected one of "
                f"{', '.join(PHOTO_SPLITS)}, or several joined by '+'"
            ) from None
    return tuple(names)


PHOTO_CACHE_BYTES = 2 * 1024**3
"""Decoded folder photos kept in memory (per process), least recently used dropped first."""


def is_photo_path(name: str) -> bool:
    """True when `name` names a photo file (it has a folder part or an image suffix), False for
    the name of a bundled photo."""
    return os.sep in name or "/" in name or is_image_file(name)


def folder_photos(folder: str | os.PathLike) -> tuple[str, ...]:
    """Every photo under `folder` (recursively, hidden files and non-images skipped), as sorted
    absolute paths.

    Raises:
        FileNotFoundError: `folder` is not a folder, or holds no photo; the message names it.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"photo folder {root} does not exist: give a folder of clean photos (PNG, JPEG, "
            "TIFF, WebP), e.g. data.train.folders=[/data/DIV2K_train_HR]"
        )
    files = sorted(
        str(path.resolve())
        for path in root.rglob("*")
        if path.is_file() and is_image_file(path) and not _hidden(path.relative_to(root))
    )
    if not files:
        raise FileNotFoundError(
            f"no photos under {root}: expected image files (.png, .jpg, .jpeg, .tif, .tiff, "
            ".webp, .bmp) in it or its subfolders"
        )
    return tuple(files)


def photo_list(
    split: Split | None = None, folders: Sequence[str | os.PathLike] | None = None
) -> tuple[str, ...]:
    """The bundled photos of `split` (none when None) followed by every photo of `folders`.

    Raises:
        ValueError: neither gives a photo, or an unknown split.
        FileNotFoundError: a folder is missing or holds no photo.
    """
    names = list(photo_names(split)) if split else []
    for folder in folders or ():
        names.extend(folder_photos(folder))
    if not names:
        raise ValueError(
            "no photos: give a bundled photo split (train, extra, val, test) or photo folders"
        )
    return tuple(names)


def photo_size(name: str) -> tuple[int, int]:
    """(height, width) of a photo as `load_photo` returns it; folder photos read the header
    only."""
    if is_photo_path(name):
        return read_image_size(name)
    return load_photo(name).shape[:2]


def load_photo(name: str) -> np.ndarray:
    """A photo as an H×W×3 float32 array in [0, 1]: a bundled photo by name (grey textures
    repeated to RGB, downscaled to `MAX_PHOTO_SIDE`), or a photo file by path (read as
    `derain.data.read_image` reads it, at full resolution).

    The array is shared between calls and read-only; copy it before writing into it.
    """
    if is_photo_path(name):
        return _FOLDER_CACHE.get(str(name))
    return _load_bundled(name)


class _PhotoCache:
    """Decoded photo files, least recently used dropped first past `PHOTO_CACHE_BYTES`."""

    def __init__(self) -> None:
        self._photos: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, path: str) -> np.ndarray:
        photo = self._photos.get(path)
        if photo is not None:
            self._photos.move_to_end(path)
            return photo
        photo = read_image(path)
        photo.setflags(write=False)
        self._photos[path] = photo
        self._bytes += photo.nbytes
        while self._bytes > PHOTO_CACHE_BYTES and len(self._photos) > 1:
            _, dropped = self._photos.popitem(last=False)
            self._bytes -= dropped.nbytes
        return photo


_FOLDER_CACHE = _PhotoCache()


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


@cache
def _load_bundled(name: str) -> np.ndarray:
    if name.startswith("stereo_motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        pixels = left if name.endswith("left") else right
    elif name in _PACKAGE_FILES:
        pixels = np.asarray(Image.open(_package_file(name)).convert("RGB"))
    elif name in _KNOWN:  # the rest ship with scikit-image under their own names
        pixels = getattr(skimage.data, name)()
    else:
        known = ", ".join(sorted(_KNOWN))
        raise ValueError(f"unknown bundled photo {name!r}: expected one of {known}")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    photo = fit_longest_side(pixels.astype(np.float32) / np.float32(255.0), MAX_PHOTO_SIDE)
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


_PACKAGE_FILES = {
    # name: (package, path inside it)
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "cheetah": ("gradio", "media_assets/images/cheetah.jpg"),
    "cheetah1": ("gradio", "media_assets/images/cheetah1.jpg"),
    "cheetah2": ("gradio", "test_data/cheetah2.jpg"),
    "groot": ("gradio", "media_assets/images/groot.jpeg"),
    "lion": ("gradio", "media_assets/images/lion.jpg"),
    "tower": ("gradio", "media_assets/images/tower.jpg"),
}


_KNOWN = frozenset(name for names in PHOTO_SPLITS.values() for name in names)


def _package_file(name: str) -> Path:
    """The file of photo `name` inside its package, found without importing the package."""
    package, inner = _PACKAGE_FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        extra = " (pip install 'derain[demo]')" if package == "gradio" else ""
        raise FileNotFoundError(
            f"photo {name!r} ships with the {package} package, which is not installed: "
            f"install it{extra} or train on photo split 'train' instead of 'train+extra'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.is_file():
        raise FileNotFoundError(
            f"photo {name!r} is missing from the installed {package} package (expected {path}); "
            f"use photo split 'train' instead of 'train+extra'"
        )
    return path

"""A rainy/clean pair on disk, how to load it, and the errors and warnings about pairs."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from derain.data.io import read_image, read_image_size

MAX_SIZE_DIFFERENCE = 4
"""Pixels by which the height or width of a pair's images may differ and still be cropped to
their common top-left area (some releases saved the rainy image one or two pixels larger)."""

RainySide = Literal["left", "right"]


class DatasetLayoutError(ValueError):
    """The files under a data set folder do not form rainy/clean pairs; the message says why."""


class DatasetNotFoundError(DatasetLayoutError, FileNotFoundError):
    """A data set folder or list file that does not exist."""


class SkippedFilesWarning(UserWarning):
    """Files that are not images (Thumbs.db, .DS_Store, README.txt...) were left out."""


class SizeMismatchWarning(UserWarning):
    """Pairs whose images differ by a few pixels are cropped to their common area."""


@dataclass(frozen=True)
class Pair:
    """One rainy/clean example on disk.

    Attributes:
        rainy: the rainy image file.
        clean: the clean (ground-truth) image file; the same file as `rainy` for side-by-side
            releases, where both halves live in one image.
        rain: the rain-layer image (R in O = B + R) when the release ships one, else None.
        rainy_half: for side-by-side files, which half ("left"/"right") is rainy; else None.
    """

    rainy: Path
    clean: Path
    rain: Path | None = None
    rainy_half: RainySide | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the pair reads (one for side-by-side releases)."""
        if self.rainy_half is not None:
            return (self.rainy,)
        return (self.rainy, self.clean) + ((self.rain,) if self.rain is not None else ())

    @property
    def name(self) -> str:
        """The rainy file's stem, used to name results (e.g. "rain-001", "901_3")."""
        return self.rainy.stem


def split_side_by_side(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut an H×W×C image holding two pictures side by side into its left and right halves.

    Both halves are H×(W // 2); for an odd width the middle column (a seam in the releases that
    have one) belongs to neither.
    """
    half = image.shape[1] // 2
    return image[:, :half], image[:, image.shape[1] - half :]


def load_pair(
    pair: Pair,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a pair as (rainy, clean, rain layer or None), each H×W×3 float32 in [0, 1].

    Images that differ by at most `MAX_SIZE_DIFFERENCE` pixels are cropped to their common
    top-left area so the three arrays always have one shape.

    Raises:
        DatasetLayoutError: the sizes differ by more than `MAX_SIZE_DIFFERENCE` pixels.
        ImageReadError: a file cannot be decoded.
    """
    if pair.rainy_half is not None:
        left, right = split_side_by_side(read_image(pair.rainy))
        rainy, clean = (left, right) if pair.rainy_half == "left" else (right, left)
        return rainy, clean, None
    images = [read_image(pair.rainy), read_image(pair.clean)]
    if pair.rain is not None:
        images.append(read_image(pair.rain))
    height, width = _common_size(pair, [image.shape[:2] for image in images])
    rainy, clean, *rain = (image[:height, :width] for image in images)
    return rainy, clean, (rain[0] if rain else None)


def check_pair_sizes(
    pairs: Sequence[Pair], sizes: Mapping[Path, tuple[int, int]] | None = None
) -> None:
    """Read every pair's image headers and verify the sizes agree, before training starts.

    `sizes` gives (height, width) by file when they are known already (see `scan_files`);
    files missing from it are read.

    Pairs that differ by a few pixels draw one `SizeMismatchWarning` for the whole list (they are
    cropped when loaded); anything larger, or a file whose header cannot be read, stops here.

    Raises:
        DatasetLayoutError: a pair's sizes differ by more than `MAX_SIZE_DIFFERENCE` pixels, or
            a side-by-side image is too narrow to hold two pictures.
        ImageReadError: a file is not a readable image; the message names it.
    """
    known = sizes or {}

    def size_of(path: Path) -> tuple[int, int]:
        return known[path] if path in known else read_image_size(path)

    cropped: list[str] = []
    for pair in pairs:
        if pair.rainy_half is not None:
            height, width = size_of(pair.rainy)
            if width < 2:
                raise DatasetLayoutError(
                    f"{pair.rainy} is {height}×{width}: too narrow to hold a rainy and a clean "
                    "picture side by side"
                )
            continue
        files = [pair.rainy, pair.clean] + ([pair.rain] if pair.rain is not None else [])
        found = [size_of(path) for path in files]
        if len(set(found)) > 1:
            _common_size(pair, found)
            cropped.append(f"{pair.rainy.name} {_size_text(found[0])} vs {_size_text(found[1])}")
    if cropped:
        warnings.warn(
            f"{len(cropped)} pair(s) differ in size by at most {MAX_SIZE_DIFFERENCE} px and are "
            f"cropped to their common top-left area, e.g. {cropped[0]}",
            SizeMismatchWarning,
            stacklevel=3,
        )


def _common_size(pair: Pair, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    heights, widths = [size[0] for size in sizes], [size[1] for size in sizes]
    if (
        max(heights) - min(heights) > MAX_SIZE_DIFFERENCE
        or max(widths) - min(widths) > MAX_SIZE_DIFFERENCE
    ):
        files = [pair.rainy, pair.clean, pair.rain]
        described = ", ".join(
            f"{path} is {_size_text(size)}" for path, size in zip(files, sizes, strict=False)
        )
        raise DatasetLayoutError(
            f"image sizes of a pair differ by more than {MAX_SIZE_DIFFERENCE} px: {described}; "
            "these files are probably not the same scene — check the pairing or fix the files"
        )
    return min(heights), min(widths)


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"

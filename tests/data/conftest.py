"""Fixtures for the data tests: small real photos with synthetic rain, written as data set trees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from derain.data import Pair, SyntheticRain, load_pair, load_photo, write_image

HEIGHT, WIDTH = 40, 48  # not square, so a transposed image would not pass for the right one
JUNK_FILES = ("Thumbs.db", ".DS_Store", "README.txt")


@dataclass(frozen=True)
class Example:
    """A clean crop of a real photo, light rain on it and its rain layer (8-bit exact), plus
    two more rainy versions with other rain (for releases with several rainy per clean)."""

    clean: np.ndarray
    rainy: np.ndarray
    rain: np.ndarray
    other_rainy: tuple[np.ndarray, ...]


class ExampleFiles:
    """Writes numbered examples as image files and tells, from pixels, which example a file is.

    Pairing is checked by content: a loaded pair must show one example's clean image on the
    clean side and the same example's rain on the rainy side, whatever the files are called.
    """

    def __init__(self, examples: list[Example]) -> None:
        self.examples = examples

    def write(self, path: Path, index: int, role: str = "clean", variant: int = 0) -> Path:
        """Save example `index`'s "clean", "rainy" or "rain" image at `path` (any suffix);
        `variant` 1 or 2 picks another rainy version."""
        example = self.examples[index]
        image = example.other_rainy[variant - 1] if variant else getattr(example, role)
        write_image(path, image)
        return path

    def write_side_by_side(self, path: Path, index: int, rainy_side: str, odd: bool = False):
        """One file holding the rainy and clean images next to each other (plus a seam column
        between them when `odd`)."""
        example = self.examples[index]
        halves = [example.rainy, example.clean]
        if rainy_side == "right":
            halves.reverse()
        seam = [np.ones((HEIGHT, 1, 3), np.float32)] if odd else []
        write_image(path, np.concatenate([halves[0], *seam, halves[1]], axis=1))
        return path

    def identify(self, image: np.ndarray, role: str) -> int:
        """Index of the example whose `role` image ("clean", "rainy" — any version — or
        "rain") `image` is; JPEG's small loss is tolerated."""
        errors = [
            min(float(np.mean((image - candidate) ** 2)) for candidate in _images(e, role))
            if image.shape == e.clean.shape
            else np.inf
            for e in self.examples
        ]
        best = int(np.argmin(errors))
        assert errors[best] < _SAME_IMAGE_MSE, f"{role} image is none of the examples"
        return best

    def pair_indices(self, pairs: list[Pair]) -> list[int]:
        """For each pair, the example it shows; asserts its rainy, clean (and rain) images all
        belong to that one example."""
        found = []
        for pair in pairs:
            rainy, clean, rain = load_pair(pair)
            index = self.identify(clean, "clean")
            assert self.identify(rainy, "rainy") == index, f"{pair.rainy} ≠ rainy {pair.clean}"
            if rain is not None:
                assert self.identify(rain, "rain") == index, f"{pair.rain} ≠ rain of {pair.clean}"
            found.append(index)
        return found


_SAME_IMAGE_MSE = 1e-3  # JPEG (quality 95) stays far below; two examples differ by > 4e-3


def _images(example: Example, role: str) -> tuple[np.ndarray, ...]:
    if role == "rainy":
        return (example.rainy, *example.other_rainy)
    return (getattr(example, role),)


@pytest.fixture(scope="session")
def examples() -> list[Example]:
    """Twelve distinct 40×48 crops of bundled photos with light synthetic rain."""
    rain = SyntheticRain("light", seed=7)
    crops = []
    for photo in ("coffee", "chelsea", "astronaut"):
        image = load_photo(photo)
        for k in range(4):
            top, left = 20 + 60 * k, 30 + 80 * k
            crops.append(image[top : top + HEIGHT, left : left + WIDTH])
    made = []
    for index, clean in enumerate(crops):
        # a crop this small can miss every streak; keep the first three draws that have some
        draws = (rain(clean, (index, draw), quantize=True) for draw in range(100))
        first, *others = [sample for sample in draws if sample.rain.any()][:3]
        made.append(
            Example(
                clean=first.clean,
                rainy=first.rainy,
                rain=first.rain,
                other_rainy=tuple(sample.rainy for sample in others),
            )
        )
    return made


@pytest.fixture
def files(examples: list[Example]) -> ExampleFiles:
    return ExampleFiles(examples)


def write_junk(folder: Path, names: tuple[str, ...] = JUNK_FILES) -> int:
    """Files real releases carry next to their images; returns how many were written."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not an image")
    return len(names)


@pytest.fixture
def junk():
    return write_junk

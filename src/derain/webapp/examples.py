"""The page's example photos: photos that ship with scikit-image, with rain from the project's
own generator (`derain.data.synthetic`), rendered when the app starts (nothing to download)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from derain.data.io import write_image
from derain.data.photos import load_photo
from derain.data.synthetic import RainSample, SyntheticRain


@dataclass(frozen=True)
class RainyExample:
    """A bundled photo (`derain.data.photos`) with rain of a preset ("light" or "heavy")."""

    photo: str
    preset: str
    key: int = 0
    seed: int = 18

    @property
    def file_name(self) -> str:
        return f"{self.photo}_{self.preset}_rain.png"

    def render(self) -> RainSample:
        """The rainy photo and its clean original (H×W×3 float32 in [0, 1], 8-bit exact)."""
        clean = np.array(load_photo(self.photo))
        return SyntheticRain(self.preset, seed=self.seed)(clean, key=self.key, quantize=True)


EXAMPLES = (RainyExample("chelsea", "light"), RainyExample("coffee", "heavy"))
"""The photos of the demo's test split, which `make train` never trains on."""


def write_examples(folder: str | Path, examples=EXAMPLES) -> list[Path]:
    """Writes each example's rainy photo as a PNG into `folder`; returns the paths."""
    paths = []
    for example in examples:
        path = Path(folder) / example.file_name
        write_image(path, example.render().rainy)
        paths.append(path)
    return paths

"""Photos the web-app tests upload, made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from derain.data.io import to_uint8, write_image
from derain.data.synthetic import SyntheticRain
from derain.evaluation.metrics import psnr
from derain.webapp.examples import RainyExample

RAINY_CAT = RainyExample("chelsea", "light", key=3, seed=7)
"""A held-out photo (the demo never trains on it) with light rain, not the page's own example."""


def write_rainy_photo(folder: Path, name: str = "rainy_cat.png") -> tuple[Path, np.ndarray]:
    """Writes RAINY_CAT's rainy photo as `folder/name` (any image suffix); returns the path and
    the clean photo (H×W×3 float32 in [0, 1])."""
    sample = RAINY_CAT.render()
    path = folder / name
    write_image(path, sample.rainy)
    return path, sample.clean


def write_large_rainy_photo(folder: Path, name: str = "large_cat.jpg") -> Path:
    """RAINY_CAT's photo enlarged to 1200×800 (0.96 MP), rain drawn at that size: a photo that a
    256MB memory budget derains in tiles."""
    clean = np.asarray(
        Image.fromarray(to_uint8(RAINY_CAT.render().clean)).resize((1200, 800)), np.float32
    )
    rainy = SyntheticRain(RAINY_CAT.preset, seed=RAINY_CAT.seed)(clean / 255, key=0).rainy
    path = folder / name
    write_image(path, rainy)
    return path


def write_bad_files(folder: Path) -> dict[str, Path]:
    """Files a person might upload by mistake: text (named .txt and .png), a cut-off PNG, and
    a PNG of noise over 1 MB."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("shopping list: umbrella\n")
    (folder / "notes.png").write_text("shopping list: umbrella\n")
    whole, _ = write_rainy_photo(folder, "whole.png")
    (folder / "cut.png").write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    return {path.name: path for path in folder.iterdir() if path.name != "whole.png"}


def y_psnr(image: np.ndarray, clean: np.ndarray) -> float:
    """The papers' Y-channel PSNR (dB) of an H×W×3 image in [0, 1] against the clean photo."""

    def batch(array):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[
            None
        ]

    return float(psnr(batch(image), batch(clean)))

"""Writing a synthetic rain data set to disk, in a layout `find_pairs` reads back.

Each example is a crop of a bundled photo with rain from `SyntheticRain`, saved as 8-bit PNGs
built from the 8-bit clean image and rain layer, so rainy − clean == rain exactly wherever the
rainy image did not clip (light rain). `params.json` records every image's draws. `run(cfg)` is the task behind `derain-synth`
(conf/synth.yaml).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from derain.data.io import write_image
from derain.data.photos import Split, crop_around, load_photo, photo_list
from derain.data.synthetic import SyntheticRain, config_as_dict, rain_config

if TYPE_CHECKING:
    from omegaconf import DictConfig

FileLayout = Literal["rain13k", "jorder"]
PARAMS_FILE = "params.json"


class OutputFolderNotEmptyError(FileExistsError):
    """The output folder already holds files and overwriting was not asked for."""


def write_synthetic_set(
    output: str | os.PathLike,
    preset: str = "light",
    count: int = 100,
    size: int = 256,
    layout: FileLayout = "rain13k",
    split: Split = "train",
    seed: int = 0,
    overwrite: bool = False,
    rain: dict[str, Any] | None = None,
    photos: str | os.PathLike | None = None,
) -> Path:
    """Render `count` rainy/clean/rain-layer triples of size×size pixels into `output`.

    Example i is a crop of photo i mod P of `split` (P photos), at a position and with rain
    drawn from (seed, i); `rain` replaces settings of the preset (`RainConfig` fields, e.g.
    jpeg_share=1 for JPEG-compressed rainy images). With `photos` (a folder of clean photos,
    searched recursively), the crops come from its photos instead of the bundled ones. Layouts:
      - "rain13k": input/NAME.png, target/NAME.png, rain_layer/NAME.png
      - "jorder": rainy/rain-N.png, norain-N.png, rainstreak-N.png (N from 1)

    Returns:
        The path of the written `params.json`.

    Raises:
        OutputFolderNotEmptyError: `output` holds files and `overwrite` is False.
        ValueError: unknown preset, layout or split, or a non-positive count/size.
        FileNotFoundError: `photos` is not a folder or holds no photo.
    """
    output = Path(output).expanduser()
    if layout not in _NAMERS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(_NAMERS)}")
    if count < 1 or size < 1:
        raise ValueError(f"count and size must be positive, got count={count}, size={size}")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise OutputFolderNotEmptyError(
            f"{output} is not empty: choose an empty folder or pass overwrite=true"
        )
    config = rain_config(preset, **(rain or {}))
    generator = SyntheticRain(config, seed)
    names = photo_list(None, [photos]) if photos is not None else photo_list(split)
    name_files = _NAMERS[layout]
    digits = max(3, len(str(count)))
    records = []
    for index in range(count):
        photo = names[index % len(names)]
        image = load_photo(photo)
        rng = np.random.default_rng([seed, index])
        row = int(rng.integers(image.shape[0]))
        col = int(rng.integers(image.shape[1]))
        clean = crop_around(image, row, col, size)
        sample = generator.render(clean, rng, quantize=True)
        files = name_files(output, index, digits)
        for role in ("rainy", "clean", "rain"):
            write_image(files[role], getattr(sample, role))
        records.append(
            {
                "index": index,
                **{role: str(path.relative_to(output)) for role, path in files.items()},
                "photo": photo,
                "centre": [row, col],
                **sample.params,
            }
        )
    params_path = output / PARAMS_FILE
    summary = {
        "preset": preset,
        "config": config_as_dict(config),
        "seed": seed,
        "size": size,
        "split": None if photos is not None else split,
        "photos": None if photos is None else str(photos),
        "layout": layout,
        "images": records,
    }
    params_path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return params_path


def _rain13k_names(out: Path, index: int, digits: int) -> dict[str, Path]:
    name = f"{index + 1:0{digits}d}.png"
    return {
        "rainy": out / "input" / name,
        "clean": out / "target" / name,
        "rain": out / "rain_layer" / name,
    }


def _jorder_names(out: Path, index: int, digits: int) -> dict[str, Path]:
    number = f"{index + 1:0{digits}d}"
    return {
        "rainy": out / "rainy" / f"rain-{number}.png",
        "clean": out / f"norain-{number}.png",
        "rain": out / f"rainstreak-{number}.png",
    }


_NAMERS: dict[str, Callable[[Path, int, int], dict[str, Path]]] = {
    "rain13k": _rain13k_names,
    "jorder": _jorder_names,
}


def run(cfg: DictConfig) -> Path:
    """Writes the set conf/synth.yaml's settings (`cfg`) describe; returns its params.json
    (`write_synthetic_set`)."""
    from omegaconf import OmegaConf

    return write_synthetic_set(
        output=cfg.output,
        preset=cfg.preset,
        count=cfg.count,
        size=cfg.size,
        layout=cfg.layout,
        split=cfg.split,
        seed=cfg.seed,
        overwrite=cfg.overwrite,
        rain=OmegaConf.to_container(cfg.rain) if cfg.rain is not None else None,
        photos=cfg.photos,
    )

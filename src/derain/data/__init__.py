"""Data: image I/O, on-disk data set layouts, synthetic rain and the Lightning DataModule.

Names are imported on first use, so `from derain.data import read_image` (inference, scoring)
does not pay for importing Lightning and albumentations.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # image files
    "IMAGE_EXTENSIONS": "io",
    "ImageReadError": "io",
    "is_image_file": "io",
    "read_image": "io",
    "read_image_size": "io",
    "to_uint8": "io",
    "write_image": "io",
    # pairs and layouts on disk
    "MAX_SIZE_DIFFERENCE": "pairs",
    "DatasetLayoutError": "pairs",
    "DatasetNotFoundError": "pairs",
    "Pair": "pairs",
    "SizeMismatchWarning": "pairs",
    "SkippedFilesWarning": "pairs",
    "check_pair_sizes": "pairs",
    "load_pair": "pairs",
    "split_side_by_side": "pairs",
    "LAYOUTS": "layouts",
    "Layout": "layouts",
    "detect_layout": "layouts",
    "find_pairs": "layouts",
    "layout_named": "layouts",
    # synthetic rain and the bundled photos
    "HEAVY_RAIN": "synthetic",
    "LIGHT_RAIN": "synthetic",
    "RAIN_PRESETS": "synthetic",
    "RainConfig": "synthetic",
    "RainSample": "synthetic",
    "SyntheticRain": "synthetic",
    "rain_preset": "synthetic",
    "PHOTO_SPLITS": "photos",
    "load_photo": "photos",
    # torch datasets, sampling and the DataModule
    "PairTransform": "datasets",
    "PairedDataset": "datasets",
    "SyntheticEvalDataset": "datasets",
    "SyntheticTrainDataset": "datasets",
    "PatchSchedule": "sampling",
    "ProgressiveBatchSampler": "sampling",
    "TrainKey": "sampling",
    "DerainDataModule": "datamodule",
    "PairedSet": "datamodule",
    "SyntheticSet": "datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

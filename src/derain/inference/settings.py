"""`InferenceSettings`: how a trained network is run, in one typed object.

The commands that run a network (derain-predict, -eval, -demo, -export, -convert) compose these
settings from conf/inference/default.yaml, `derain.load` takes them as keyword arguments, and
`Restorer` reads them; each setting is defined, checked and defaulted here only (a test keeps the
YAML's defaults equal to these).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from derain.inference.tiling import DEFAULT_OVERLAP, check_max_tile, parse_memory_size
from derain.models.ensemble import SELF_ENSEMBLES, self_ensemble_name

PRECISIONS: dict[str, torch.dtype | None] = {
    "32-true": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}
"""`precision=` values (Lightning's names, as `trainer.precision`) and the autocast dtype each
runs under (None: plain float32)."""

RENAMED_PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}
"""Earlier names of the precisions, refused with the name to write instead."""

MODEL_MAX_TILE = "model"
"""`max_tile=` value that takes the model's own (`derain.inference.StoredNetwork.max_tile`)."""


def check_precision(value: Any, setting: str = "precision") -> str:
    """`value` if it is one of `PRECISIONS`; a ValueError names `setting` and the fix otherwise."""
    if value in RENAMED_PRECISIONS:
        raise ValueError(
            f"{setting}={value} is an earlier name: write {setting}={RENAMED_PRECISIONS[value]} "
            f"(derain uses Lightning's names everywhere: {', '.join(PRECISIONS)})"
        )
    if value not in PRECISIONS:
        raise ValueError(f"{setting}={value!r} is not one of {', '.join(PRECISIONS)}")
    return value


@dataclass(frozen=True)
class InferenceSettings:
    """How a network is run. Checked when made: a bad value raises ValueError naming it.

    ckpt_path: the model: None (the bundled model), a bundled model's name, a model folder, a
        derain `.ckpt`/`.safetensors` file or the authors' `.pth`
        (`derain.inference.sources.resolve_model`).
    device: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...
    precision: "32-true" (float32), "bf16-mixed" (autocast; CPU or GPU) or "16-mixed"
        (autocast; GPU only).
    max_memory: working-memory budget per image (bytes or "2GB", "512MiB"...); None: 2 GB on
        CPU, 80% of the free GPU memory.
    max_tile: with `tile=None`, the largest tile side: "model" (the model's own), None (no
        limit) or a multiple of 16 above twice `overlap`.
    self_ensemble: mean over flips/rotations: False (one pass), True or "d4" (8 passes),
        "flips" (the 4 that keep streaks vertical).
    tile: tile side in pixels (a multiple of 16 above twice `overlap`); None chooses tiles from
        `max_memory` and `max_tile`, only for images that need them.
    overlap: least overlap of neighbouring tiles in pixels, blended smoothly.
    """

    ckpt_path: str | None = None
    device: str = "auto"
    precision: str = "32-true"
    max_memory: int | str | None = None
    max_tile: int | str | None = MODEL_MAX_TILE
    self_ensemble: bool | str = False
    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or self.overlap < 0:
            raise ValueError(f"overlap={self.overlap!r} must be 0 or more pixels, e.g. overlap=32")
        if self.max_tile != MODEL_MAX_TILE:
            if isinstance(self.max_tile, str):
                raise ValueError(
                    f"max_tile={self.max_tile!r}: expected model, null or a multiple of 16"
                )
            check_max_tile(self.max_tile, self.overlap)
        if self.tile is not None and (
            isinstance(self.tile, bool) or not isinstance(self.tile, int)
        ):
            raise ValueError(f"tile={self.tile!r} must be null or a number of pixels, e.g. 512")
        if self.max_memory is not None:
            parse_memory_size(self.max_memory)
        try:
            self_ensemble_name(self.self_ensemble)
        except ValueError:
            choices = ", ".join(["off", *SELF_ENSEMBLES])
            raise ValueError(
                f"self_ensemble={self.self_ensemble} is not one of {choices} (true means d4; "
                "false or null, off: one pass)"
            ) from None
        if not isinstance(self.device, (str, torch.device)):
            raise ValueError(f"device={self.device!r} is not a device name, e.g. auto, cpu, cuda")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> InferenceSettings:
        """The settings among `cfg`'s keys (a command's composed config); others are left out."""
        return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls) if f.name in cfg})

    def replace(self, **changes: Any) -> InferenceSettings:
        """These settings with `changes` (checked again)."""
        return dataclasses.replace(self, **changes)

    def check_applies(self, used: Iterable[str], command: str, hints: Mapping[str, str] = {}):
        """Refuses settings `command` does not use (those not in `used`) when they differ from
        their defaults, so that a setting is never silently ignored; `hints` says, per setting,
        what to use instead."""
        defaults = InferenceSettings()
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name not in used and value != getattr(defaults, field.name):
                hint = hints.get(field.name, "leave it out")
                raise ValueError(f"{field.name}={value} does not apply to {command}: {hint}")

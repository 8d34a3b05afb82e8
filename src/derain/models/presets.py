"""Named configurations of the ELF network with their reference numbers.

Reference counts were measured on the authors' published code (`ALformer.py`; unique parameters,
torch.utils.flop_counter with MACs = flops / 2 on one 3×256×256 image). The network here has
exactly these parameters, and computes the same function: weights ported with
`derain.models.from_authors` reproduce the authors' outputs (tests/models/test_authors.py).
A preset is the paper's network (ELF's defaults) with a few `changes`; `conf/model/elf.yaml` lists
ELF's arguments for Hydra and the other model configs compose it with the same changes (a test
keeps the two in step).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from derain.models.elf import ELF

_SPEED_ONLY = ("channels_last", "compile")
"""ELF arguments that change speed, not the network."""


@dataclass(frozen=True)
class Preset:
    changes: dict[str, Any]
    """What differs from the paper's network (ELF's defaults)."""
    description: str
    reference_params: int | None = None
    reference_gmacs_256: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def arguments(self) -> dict[str, Any]:
        """ELF's structural arguments of this preset (its defaults with the `changes`)."""
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(ELF).parameters.items()
            if name not in _SPEED_ONLY
        }
        return {**defaults, **self.changes}


PRESETS: dict[str, Preset] = {
    "elf": Preset(
        {},
        "the paper's network (ACM MM 2022): 42.1% of MPRNet's parameters, 11.7% of its cost",
        reference_params=1_536_782,
        reference_gmacs_256=17.51,
    ),
    "elf_small": Preset(
        {"depth": 5},
        "the authors' network as published (ALformer.py): 5 transformer blocks per branch",
        reference_params=1_223_972,
        reference_gmacs_256=12.04,
    ),
    "elf_mid": Preset(
        {"width": 32, "depth": 3},
        "between elf_tiny and elf_small (1.8x elf_tiny's parameters, 1.7x its training step on "
        "CPU): the capacity comparison of the default model (docs/training.md)",
    ),
    "elf_tiny": Preset(
        {"width": 24, "depth": 2},
        "CPU demo and tests: half the width, two transformer blocks per branch",
    ),
}


def preset_arguments(name: str) -> dict[str, Any]:
    """Constructor arguments of a named preset; unknown names list the valid ones."""
    try:
        return dict(PRESETS[name].arguments)
    except KeyError:
        raise ValueError(f"unknown ELF preset {name!r}; choose one of {sorted(PRESETS)}") from None

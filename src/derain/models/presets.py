"""Named configurations of the ELF network with their reference numbers.

Reference counts were measured on the authors' published code (`ALformer.py`; unique parameters,
torch.utils.flop_counter with MACs = flops / 2 on one 3×256×256 image). The network here has
exactly these parameters, and computes the same function: weights ported with
`derain.models.from_authors` reproduce the authors' outputs (tests/models/test_authors.py).
`conf/model/<name>.yaml` lists the same arguments for Hydra (a test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    arguments: dict[str, Any]
    description: str
    reference_params: int | None = None
    reference_gmacs_256: float | None = None
    notes: list[str] = field(default_factory=list)


PRESETS: dict[str, Preset] = {
    "elf": Preset(
        {"width": 48, "depth": 10, "heads": 2, "mam_heads": 1},
        "the paper's network (ACM MM 2022): 42.1% of MPRNet's parameters, 11.7% of its cost",
        reference_params=1_536_782,
        reference_gmacs_256=17.51,
    ),
    "elf_small": Preset(
        {"width": 48, "depth": 5, "heads": 2, "mam_heads": 1},
        "the authors' network as published (ALformer.py): 5 transformer blocks per branch",
        reference_params=1_223_972,
        reference_gmacs_256=12.04,
    ),
    "elf_tiny": Preset(
        {"width": 24, "depth": 2, "heads": 2, "mam_heads": 1},
        "CPU demo and tests: half the width, two transformer blocks per branch",
    ),
}


def preset_arguments(name: str) -> dict[str, Any]:
    """Constructor arguments of a named preset; unknown names list the valid ones."""
    try:
        return dict(PRESETS[name].arguments)
    except KeyError:
        raise ValueError(f"unknown ELF preset {name!r}; choose one of {sorted(PRESETS)}") from None

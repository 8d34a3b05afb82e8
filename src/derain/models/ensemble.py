"""Geometric self-ensemble: the mean prediction over the eight flips and rotations of an image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

DIHEDRAL = tuple((quarter_turns, flip) for flip in (False, True) for quarter_turns in range(4))
"""The eight symmetries of a rectangle: (quarter turns counter-clockwise, mirrored first)."""

FLIPS = ((0, False), (0, True), (2, False), (2, True))
"""The four symmetries that keep lines' orientation (identity, left-right mirror, half turn,
top-bottom mirror): near-vertical streaks stay near-vertical."""


@dataclass(frozen=True)
class SelfEnsemble:
    """A named set of flips/rotations whose outputs are averaged, and how result tables say it."""

    name: str
    transforms: tuple[tuple[int, bool], ...]
    description: str


SELF_ENSEMBLES: dict[str, SelfEnsemble] = {
    "flips": SelfEnsemble("flips", FLIPS, "the 4 orientation-keeping flips (×4 self-ensemble)"),
    "d4": SelfEnsemble("d4", DIHEDRAL, "the 8 flips/rotations (×8 self-ensemble)"),
}
"""The values of every `self_ensemble` setting (training's module, derain-eval, derain-predict,
the web app, `derain.load`): "flips" (4 passes) or "d4" (8 passes)."""


def self_ensemble_name(value: bool | str | None) -> str | None:
    """The one reading of a `self_ensemble` setting: None, False or "off" → None (one pass);
    True → "d4"; "d4" or "flips" as given. Anything else raises ValueError listing the values."""
    if value is None or value is False or value == "off":
        return None
    name = "d4" if value is True else value
    if name not in SELF_ENSEMBLES:
        raise ValueError(
            f"unknown self-ensemble {value!r}: expected one of {', '.join(sorted(SELF_ENSEMBLES))}, "
            "true (= d4), or false/null for one pass"
        )
    return name


def ensemble_transforms(name: str) -> tuple[tuple[int, bool], ...]:
    """The transforms of a named ensemble ("d4" or "flips"); other names list the valid ones."""
    checked = self_ensemble_name(name)
    if checked is None:
        raise ValueError(f"self-ensemble {name!r} names no transforms: use d4 or flips")
    return SELF_ENSEMBLES[checked].transforms


def dihedral(x: Tensor, quarter_turns: int, flip: bool) -> Tensor:
    """Mirrors B×C×H×W left-right when `flip`, then turns it by `quarter_turns` × 90°."""
    x = x.flip(-1) if flip else x
    return torch.rot90(x, quarter_turns, dims=(-2, -1))


def inverse_dihedral(x: Tensor, quarter_turns: int, flip: bool) -> Tensor:
    """Undoes `dihedral(·, quarter_turns, flip)`."""
    x = torch.rot90(x, -quarter_turns, dims=(-2, -1))
    return x.flip(-1) if flip else x


def self_ensemble(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    transforms: tuple[tuple[int, bool], ...] = DIHEDRAL,
) -> Tensor:
    """Mean of `inverse(fn(transform(x)))` over `transforms` (default: the eight of `DIHEDRAL`).

    `fn` maps B×3×H×W (or the turned B×3×W×H) to B×C×H×W; returns B×C×H×W float32. Transforms
    run one after the other, so memory stays that of one pass plus the running sum.
    """
    total = None
    for quarter_turns, flip in transforms:
        out = inverse_dihedral(fn(dihedral(x, quarter_turns, flip)), quarter_turns, flip).float()
        total = out.clone() if total is None else total.add_(out)
    return total.div_(len(transforms))

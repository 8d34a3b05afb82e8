"""Geometric self-ensemble: the mean prediction over the eight flips and rotations of an image."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

DIHEDRAL = tuple((quarter_turns, flip) for flip in (False, True) for quarter_turns in range(4))
"""The eight symmetries of a rectangle: (quarter turns counter-clockwise, mirrored first)."""

FLIPS = ((0, False), (0, True), (2, False), (2, True))
"""The four symmetries that keep lines' orientation (identity, left-right mirror, half turn,
top-bottom mirror): near-vertical streaks stay near-vertical."""

ENSEMBLES: dict[str, tuple[tuple[int, bool], ...]] = {"d4": DIHEDRAL, "flips": FLIPS}
"""Named transform sets for `self_ensemble`: "d4" (8 passes) and "flips" (4 passes)."""


def ensemble_transforms(name: str) -> tuple[tuple[int, bool], ...]:
    """The transforms of a named ensemble ("d4" or "flips"); other names list the valid ones."""
    try:
        return ENSEMBLES[name]
    except KeyError:
        raise ValueError(
            f"unknown self-ensemble {name!r}: expected one of {', '.join(ENSEMBLES)}"
        ) from None


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

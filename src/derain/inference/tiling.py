"""Tiled inference: an image too large for one forward pass is processed as overlapping tiles.

Each tile's output is weighted by a separable window that ramps up (raised cosine) across the
overlap with each neighbour, and the weighted sum is divided by the summed weights, so the blend
is an exact partition of unity: where tiles agree (a constant image through an identity), the
result is exactly their value, and where they differ the seam fades over the whole overlap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_memory_size(value: int | float | str) -> int:
    """Bytes from a size: a number of bytes, or a string such as "2GB", "512 MB", "1.5GiB".

    kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        size = value
    else:
        found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        unit = found.group(2).lower() if found else None
        if unit not in _MEMORY_UNITS:
            raise ValueError(
                f"max_memory={value!r} is not a memory size: write bytes or a number with a unit, "
                "e.g. max_memory=2GB, 512MB or 1.5GiB"
            )
        size = float(found.group(1)) * _MEMORY_UNITS[unit]
    if size <= 0:
        raise ValueError(f"max_memory={value!r} must be positive, e.g. max_memory=2GB")
    return int(size)


def axis_tiles(length: int, tile: int, overlap: int, multiple: int = 16) -> list[tuple[int, int]]:
    """(start, size) of the tiles that cover `length` pixels along one axis.

    One tile of `length` when it fits in `tile`. Otherwise the fewest tiles of at most `tile`
    pixels that overlap their neighbours by at least `overlap`, all of one size — the smallest
    multiple of `multiple` that still gives that overlap, so no pixels are wasted on padding or
    on needless overlap — spread evenly from 0 to `length − size`.
    """
    if length <= tile:
        return [(0, length)]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap={overlap} must be at least 0 and below tile={tile}")
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, round_up(math.ceil((length + (count - 1) * overlap) / count), multiple))
    # floor spacing keeps every gap ≤ ceil(mean gap) ≤ size − overlap
    return [(i * (length - size) // (count - 1), size) for i in range(count)]


def blend_windows(tiles: list[tuple[int, int]], device: torch.device | str = "cpu") -> list[Tensor]:
    """One positive weight vector per tile of `axis_tiles`: 1 inside, and a raised-cosine ramp
    across the overlap with each neighbour. Ramps of neighbours sum to 1 across their overlap.
    """
    windows = []
    for i, (start, size) in enumerate(tiles):
        position = torch.arange(size, dtype=torch.float32, device=device) + 0.5
        window = torch.ones(size, device=device)
        shared_before = tiles[i - 1][0] + tiles[i - 1][1] - start if i > 0 else 0
        shared_after = start + size - tiles[i + 1][0] if i < len(tiles) - 1 else 0
        if shared_before > 0:
            window = torch.minimum(window, _ramp(position, shared_before))
        if shared_after > 0:
            window = torch.minimum(window, _ramp(size - position, shared_after))
        windows.append(window)
    return windows


DEFAULT_OVERLAP = 32
"""Least overlap of neighbouring tiles (pixels) unless one is chosen; blended smoothly."""


def check_max_tile(
    value: Any, overlap: int = DEFAULT_OVERLAP, name: str = "max_tile"
) -> int | None:
    """`value` as a max_tile: None, or a multiple of 16 above twice `overlap` (room for a tile
    between its overlaps); a ValueError names `name` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value % 16 or value <= 2 * overlap:
        raise ValueError(
            f"{name}={value!r} must be null or a multiple of 16 above {2 * overlap} (pixels, "
            "twice the tiles' overlap), e.g. 256"
        )
    return value


def tiled_apply(
    fn: Callable[[Tensor], Tensor], x: Tensor, tile: int, overlap: int, multiple: int = 16
) -> Tensor:
    """`fn` applied to overlapping tiles of `x`, blended into one image.

    Args:
        fn: maps B×3×h×w to B×C×h×w (any C), for any tile size h×w.
        x: B×3×H×W.
        tile: largest tile side in pixels, a multiple of `multiple`.
        overlap: least overlap of neighbouring tiles in pixels.

    Returns: B×C×H×W float32 on `x`'s device.
    """
    height, width = x.shape[-2:]
    rows = axis_tiles(height, tile, overlap, multiple)
    cols = axis_tiles(width, tile, overlap, multiple)
    row_windows = blend_windows(rows, x.device)
    col_windows = blend_windows(cols, x.device)
    weight_sum = torch.zeros(1, 1, height, width, device=x.device)
    blended = None
    for (top, tile_height), row_window in zip(rows, row_windows, strict=True):
        for (left, tile_width), col_window in zip(cols, col_windows, strict=True):
            region = (..., slice(top, top + tile_height), slice(left, left + tile_width))
            out = fn(x[region]).float()
            if blended is None:
                blended = torch.zeros(*out.shape[:2], height, width, device=x.device)
            window = row_window[:, None] * col_window[None, :]
            blended[region] += out * window
            weight_sum[region] += window
    return blended.div_(weight_sum)


def _ramp(distance: Tensor, overlap: int) -> Tensor:
    """sin²(π/2 · d/overlap) for pixel centres d inside the overlap, 1 beyond it."""
    return torch.sin(0.5 * torch.pi * (distance / overlap).clamp(max=1.0)) ** 2


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is ≥ `value`."""
    return -(-value // multiple) * multiple

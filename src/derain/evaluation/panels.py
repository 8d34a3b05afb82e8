"""Image panels: rows of (rainy | restored | clean | predicted rain) for people to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

PANEL_COLUMNS = ("rainy", "restored", "clean", "rain")


def to_hwc_uint8(img: Tensor) -> np.ndarray:
    """3×H×W float in [0,1] → H×W×3 uint8 (clipped; halves round up, as derain.data.io does)."""
    scaled = img.detach().float().clamp(0, 1) * 255 + 0.5
    return scaled.floor().byte().permute(1, 2, 0).cpu().numpy()


def make_panel(
    rows: Sequence[Sequence[Tensor]],
    labels: Sequence[str] = PANEL_COLUMNS,
    row_titles: Sequence[str] | None = None,
    max_side: int = 256,
) -> np.ndarray:
    """Grid image of `rows`, each a sequence of 3×H×W tensors in [0,1] (same size within a row).

    Rows are resized to a common width of at most `max_side` per tile; the column labels are
    written above the first row and `row_titles` (e.g. PSNR figures) on the first tile of each
    row. Returns H×W×3 uint8.
    """
    tile_w = min(max_side, max(img.shape[-1] for row in rows for img in row))
    pad, header = 4, 18
    rendered_rows = []
    for row in rows:
        h, w = row[0].shape[-2:]
        tile_h = max(1, round(h * tile_w / w))
        tiles = [
            torch.nn.functional.interpolate(
                img[None].float(), size=(tile_h, tile_w), mode="bilinear", align_corners=False
            )[0]
            for img in row
        ]
        rendered_rows.append([to_hwc_uint8(t) for t in tiles])
    ncols = max(len(r) for r in rendered_rows)
    width = ncols * tile_w + (ncols + 1) * pad
    height = header + sum(r[0].shape[0] + pad for r in rendered_rows) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(labels[:ncols]):
        draw.text((pad + c * (tile_w + pad) + 2, 3), label, fill=(0, 0, 0))
    y = header
    for r, tiles in enumerate(rendered_rows):
        for c, tile in enumerate(tiles):
            canvas.paste(Image.fromarray(tile), (pad + c * (tile_w + pad), y))
        if row_titles is not None:
            x0 = pad + 2
            draw.rectangle((x0 - 2, y, x0 + 6 * len(row_titles[r]) + 2, y + 12), fill=(0, 0, 0))
            draw.text((x0, y), row_titles[r], fill=(255, 255, 0))
        y += tiles[0].shape[0] + pad
    return np.asarray(canvas)


def save_panel(panel: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(panel).save(path)
    return path

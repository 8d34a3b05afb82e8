"""Deraining uploaded photos for the web app: check each, derain it, write the result.

Knows nothing of Gradio, so every rule the page enforces (what counts as an image, the pixel
limit, the output's name and format) is testable without a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from derain.data.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    read_image_size,
    to_uint8,
    write_image,
)
from derain.data.photos import fit_longest_side
from derain.inference import PhotoReadError, Restorer
from derain.inference.photo_files import DEFAULT_QUALITY
from derain.inference.restorer import Progress
from derain.webapp.workspace import Workspace

PREVIEW_SIDE = 1024
"""Longest side of the pictures shown in the page; the download keeps the full resolution."""


class UploadError(ValueError):
    """An upload the app cannot derain; the message names the file and says what would work."""


@dataclass
class DerainResult:
    """One derained upload.

    name: the uploaded file's name.
    output: the full-resolution result, named `<stem>_derained<suffix>` in the upload's format.
    before, after, rain: H×W×3 uint8 previews (longest side at most `PREVIEW_SIDE`).
    height, width: the upload's (upright) size; `tiles`: how many tiles it went through.
    seconds: time spent reading, deraining and writing the photo.
    """

    name: str
    output: Path
    before: np.ndarray
    after: np.ndarray
    rain: np.ndarray
    height: int
    width: int
    tiles: int
    seconds: float


def check_upload(path: str | Path, max_pixels: int, name: str | None = None) -> tuple[int, int]:
    """(height, width) of an uploaded image, from its header, after checking that it can be
    derained here: an image suffix, a readable header and at most `max_pixels` pixels.

    `name` is what the person called the file (uploads are stored under other names).

    Raises:
        UploadError: with a message for the page.
    """
    path = Path(path)
    name = name or path.name
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise UploadError(
            f"{name} is not an image file: upload photos as "
            f"{', '.join(sorted(s.lstrip('.') for s in IMAGE_EXTENSIONS))}"
        )
    try:
        height, width = read_image_size(path)
    except ImageReadError as err:
        if isinstance(err.__cause__, Image.DecompressionBombError):
            raise UploadError(
                f"{name} has far more pixels than this app accepts ({_megapixels(max_pixels)}); "
                "start the app with a larger limit, e.g. derain-demo max_pixels=200000000"
            ) from None
        raise UploadError(
            f"{name} cannot be read as an image: it is not one, or it is damaged"
        ) from None
    if height * width > max_pixels:
        raise UploadError(
            f"{name} is {width}×{height} ({_megapixels(height * width)}), more than this app "
            f"accepts ({_megapixels(max_pixels)}); start the app with a larger limit, e.g. "
            f"derain-demo max_pixels={height * width}"
        )
    return height, width


def derain_upload(
    restorer: Restorer,
    path: str | Path,
    output_dir: str | Path,
    max_pixels: int,
    name: str | None = None,
    progress: Progress | None = None,
    quality: int = DEFAULT_QUALITY,
) -> DerainResult:
    """Checks (`check_upload`), reads and derains one uploaded image into `output_dir`.

    Args:
        restorer: the network and its settings (self-ensemble, memory budget).
        path: the uploaded file; `name`: the name the person gave it (default: the file's).
        output_dir: where the result is written (created if missing), in the upload's format
            (JPEG and WebP at `quality`), with its profile, EXIF, alpha, grey and bit depth.
        progress: hears of each network pass (see `derain.inference.restorer.Progress`).

    Raises:
        UploadError: the file is no image, is damaged, is too large, or does not fit the
            memory budget even in tiles.
    """
    path = Path(path)
    name = name or path.name
    height, width = check_upload(path, max_pixels, name)
    output = Path(output_dir) / f"{Path(name).stem}_derained{Path(name).suffix.lower()}"
    start = time.perf_counter()
    try:
        # the same reading and writing as derain-predict: format, profile, EXIF, alpha, grey
        # and bit depth are kept
        result = restorer.derain_file(path, output, quality=quality, progress=progress)
    except PhotoReadError:
        # a header can be intact while the pixels are cut off (an interrupted copy)
        raise UploadError(f"{name} cannot be read as an image: the file is damaged") from None
    except ValueError as err:  # the memory budget cannot hold even the smallest tile
        raise UploadError(
            f"{name} does not fit a memory budget of {restorer.max_memory / 1e9:.2f} GB, even "
            f"in tiles: choose a larger budget ({err})"
        ) from None
    seconds = time.perf_counter() - start
    return DerainResult(
        name=name,
        output=output,
        before=_preview(result.photo.pixels),
        after=_preview(result.restored),
        rain=_preview(result.rain),
        height=height,
        width=width,
        tiles=restorer.last_plan.tiles,
        seconds=seconds,
    )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} MP"


def _preview(image: np.ndarray) -> np.ndarray:
    return to_uint8(fit_longest_side(image, PREVIEW_SIDE))


def derain_photos(
    restorer: Restorer,
    workspace: Workspace,
    max_pixels: int,
    paths: list[str],
    self_ensemble: str,
    max_memory: str,
    progress: Callable[[float, str], None] | None = None,
    quality: int = DEFAULT_QUALITY,
) -> tuple[list[dict], list[str]]:
    """Derains each uploaded file into a new request folder of `workspace` (JPEG and WebP
    results at `quality`).

    Returns (results, errors): one dict per derained photo (`key`: its upload's index, `name`,
    `output`, the `before`, `after` and `rain` preview PNGs, and a one-line Markdown
    `summary`), and one message per file that could not be derained. `progress(fraction of
    the whole request, description)` hears of every network pass.
    """
    ensemble = False if self_ensemble == "off" else self_ensemble
    restorer = restorer.with_options(self_ensemble=ensemble, max_memory=max_memory)
    request = workspace.new_request()
    results, errors = [], []
    for index, path in enumerate(paths):
        name = Path(path).name
        folder = request / str(index)
        try:
            result = derain_upload(
                restorer,
                path,
                folder,
                max_pixels,
                name=name,
                progress=_pass_reporter(restorer, progress, name, index, len(paths)),
                quality=quality,
            )
        except UploadError as err:
            errors.append(str(err))
            continue
        results.append(_saved(result, folder, key=str(index)))
    return results, errors


def _pass_reporter(
    restorer: Restorer,
    progress: Callable[[float, str], None] | None,
    name: str,
    index: int,
    count: int,
) -> Progress | None:
    """Turns `Restorer`'s (passes done, total) into (fraction of the request, text)."""
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        tiles = restorer.last_plan.tiles
        tiles_done = done * tiles // total
        where = f"{tiles_done}/{tiles} tiles" if tiles > 1 else f"{done}/{total} passes"
        progress((index + done / total) / count, f"{name} ({index + 1}/{count}): {where}")

    return report


def _saved(result: DerainResult, folder: Path, key: str) -> dict:
    """The page's record of a result: its previews written as PNGs next to the output."""
    previews = {}
    for kind in ("before", "after", "rain"):
        previews[kind] = str(folder / f"{kind}.png")
        write_image(previews[kind], getattr(result, kind))
    tiles = f", {result.tiles} tiles" if result.tiles > 1 else ""
    summary = (
        f"**{result.name}**: {result.width}×{result.height}{tiles}, "
        f"derained in {result.seconds:.1f} s"
    )
    return {
        "key": key,
        "name": result.name,
        "output": str(result.output),
        "summary": summary,
        **previews,
    }

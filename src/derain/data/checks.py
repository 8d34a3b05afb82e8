"""Unreadable images: the set-up check of a data set's files and the limit on skipped samples.

A data set of thousands of files may hold a few truncated or corrupt ones. At set-up,
`scan_files` reads every header ("header", fast) or decodes every image ("full", in parallel
across cores, with a progress bar) and returns every bad file at once. During training, a sample
that still fails to load is replaced by another one (`PairedDataset`), up to `max_bad_samples`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

from derain.data.io import ImageReadError, decode_image, read_image_size

CheckMode = Literal["header", "full"]
CHECK_MODES: tuple[str, ...] = ("header", "full")


class TooManyBadSamplesError(ImageReadError):
    """More files of a training or validation set are unreadable than its limit allows."""


class BadSampleWarning(UserWarning):
    """A training or validation sample could not be read and another one took its place."""


def max_bad_samples(size: int, fraction: float, fail_fast: bool) -> int | None:
    """How many unreadable samples a set of `size` may skip: floor(fraction · size), or None
    (stop at the first one) with `fail_fast`."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(
            f"data.max_bad_fraction must be in [0, 1] (share of a set's samples that may be "
            f"skipped), got {fraction}"
        )
    return None if fail_fast else math.floor(fraction * size)


def check_mode(value: bool | str | None) -> CheckMode | None:
    """`data.check_images` as a mode: true → "header", false/None → no check."""
    if value is True:
        return "header"
    if value is False or value is None:
        return None
    if value not in CHECK_MODES:
        raise ValueError(
            f"data.check_images must be true/header (read every header), full (decode every "
            f"image) or false, got {value!r}"
        )
    return value  # type: ignore[return-value]


def scan_files(
    paths: Iterable[Path],
    mode: CheckMode = "header",
    workers: int | None = None,
    description: str = "checking images",
) -> tuple[dict[Path, tuple[int, int]], dict[Path, str]]:
    """Read every file's header ("header") or decode every image ("full").

    Args:
        paths: image files (duplicates are read once).
        mode: "header" reads headers in this process; "full" decodes every image in `workers`
            processes (default: one per core) behind a progress bar.
        workers: processes for "full" mode.
        description: the progress bar's label.

    Returns:
        (sizes, bad): (height, width) of every readable file, and for every unreadable one the
        reason, both keyed by path.
    """
    files = list(dict.fromkeys(Path(p) for p in paths))
    if mode == "header" or len(files) < 2:
        results = [_probe(path, mode) for path in files]
    else:
        workers = workers or _usable_cores()
        from rich.console import Console
        from rich.progress import track

        console = Console(stderr=True)
        with ProcessPoolExecutor(max_workers=min(workers, len(files))) as pool:
            chunk = max(1, len(files) // (workers * 16))
            results = list(
                track(
                    pool.map(_probe, files, [mode] * len(files), chunksize=chunk),
                    total=len(files),
                    description=description,
                    transient=True,
                    console=console,
                    disable=not console.is_terminal,  # no bar in log files
                )
            )
    sizes = {path: size for path, size, error in results if error is None}
    bad = {path: error for path, size, error in results if error is not None}
    return sizes, bad


def describe_bad_files(bad: dict[Path, str], limit: int = 50) -> str:
    """One line per bad file (at most `limit`, then a count of the rest)."""
    lines = [f"  {path}: {reason}" for path, reason in list(bad.items())[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)


def warn_bad_sample(path: Path | str, reason: str) -> None:
    """The warning for a sample replaced during training (once per file and process)."""
    warnings.warn(
        f"skipping unreadable sample {path} ({reason}); another sample takes its place",
        BadSampleWarning,
        stacklevel=3,
    )


def _probe(path: Path, mode: CheckMode) -> tuple[Path, tuple[int, int] | None, str | None]:
    try:
        if mode == "full":
            return path, decode_image(path), None
        return path, read_image_size(path), None
    except FileNotFoundError:
        return path, None, "file not found"
    except ImageReadError as err:
        return path, None, str(err.__cause__ or err)


def _usable_cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # every process of a multi-GPU node runs its own set-up: share the node's cores
    return max(1, (cores or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))

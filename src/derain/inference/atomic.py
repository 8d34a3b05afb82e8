"""Writing a file so that a failed or interrupted write never leaves half a file behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a hidden temporary path beside `path` (same suffix) to write to; when the block
    succeeds it is renamed over `path` in one step, otherwise removed, so `path` holds either
    its previous content or the complete new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")
    try:
        yield partial
        # temporary files are private (0600); the result gets the permissions of a new file
        partial.chmod(new_mode(0o666))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def new_mode(base: int) -> int:
    """The permissions a new file (`base` 0o666) or folder (0o777) gets under this process's
    umask; temporary files and folders are created private and are given these when kept."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask

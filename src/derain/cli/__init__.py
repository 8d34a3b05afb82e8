"""Thin command-line entry points (Hydra apps) on top of the library."""

from __future__ import annotations

import sys

from rich.console import Console


def make_console() -> Console:
    """A rich console; when output goes to a pipe or file, wide enough that tables are not cut."""
    return Console() if sys.stdout.isatty() else Console(width=140)

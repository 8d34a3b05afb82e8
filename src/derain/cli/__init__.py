"""Thin command-line entry points (Hydra apps): each composes its config and calls its task's
`run(cfg)` (in the package the command belongs to), and turns a known error into one line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from derain.runtime.console import make_console

__all__ = ["fail", "make_console", "refuse_renamed", "run_task"]

RENAMED = {
    "ckpt": "ckpt_path",
    "out": "output",
    "n": "count",
    "eval_precision": "precision",
}
"""Settings' earlier names → their names now (one name per setting in every command)."""


def refuse_renamed(command: str, args: Sequence[str] | None = None) -> None:
    """Stops with a line naming the setting to write when the command line (`args`, else
    sys.argv) sets a setting by an earlier name (`RENAMED`)."""
    for arg in sys.argv[1:] if args is None else args:
        key, equals, value = arg.lstrip("+~").partition("=")
        if equals and key in RENAMED:
            fail(command, f"{key}= is now {RENAMED[key]}=: write {RENAMED[key]}={value}", code=2)


def fail(command: str, message: str, code: int = 1) -> None:
    """Prints `derain-<command>: error: message` to stderr and exits with `code`."""
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]derain-{command}: error:[/] {escape(message)}", highlight=False
    )
    sys.exit(code)


def run_task(
    command: str,
    task: Callable[..., Any],
    *args: Any,
    errors: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError),
) -> Any:
    """`task(*args)`; an error of `errors` (their messages name the file or setting and the fix;
    a traceback would only bury them) ends the command with that message, exit code 1."""
    try:
        return task(*args)
    except errors as err:
        fail(command, str(err))

"""What a run prints: each log message once, no third-party advice that is known not to apply
here, and tables as wide as they need. Real warnings stay visible."""

from __future__ import annotations

import logging
import sys
import warnings

from rich.console import Console

_HARMLESS_WARNINGS = (
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.13 deprecates; nothing to change
    # on our side, and nothing Lightning's users can do
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # channels-last maps give depthwise and 1×1 convolution weights gradients whose strides differ
    # from the parameters' in size-1 dimensions only: the same order in memory, so DDP's copy into
    # its bucket costs the same (382 against 381 µs a step for elf_tiny:
    # python -m derain.benchmarks.bench_ddp_strides)
    "Grad strides do not match bucket view strides",
)


class _NoProductTips(logging.Filter):
    """Drops Lightning's "💡 Tip: try installing ..." advertisements for its cloud services."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_third_party() -> None:
    """Silences what is known to be harmless and makes each Lightning message print once.

    `lightning/__init__` gives its logger a console handler of its own, so under Hydra, whose
    root handlers print and file every message, each message would appear twice: the own
    handler goes when the root has handlers. Idempotent.
    """
    lightning = logging.getLogger("lightning")
    if logging.getLogger().hasHandlers():
        for handler in list(lightning.handlers):
            lightning.removeHandler(handler)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoProductTips) for f in rank_zero.filters):
        rank_zero.addFilter(_NoProductTips())
    for message in _HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def make_console() -> Console:
    """A rich console; when output goes to a pipe or file, wide enough that tables are not cut."""
    return Console() if sys.stdout.isatty() else Console(width=140)

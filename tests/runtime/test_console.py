"""What a run prints: each Lightning message once, no product tips, harmless warnings silenced."""

from __future__ import annotations

import logging
import warnings

import lightning  # noqa: F401  (its import gives the "lightning" logger a console handler)
import pytest

from derain.runtime.console import quiet_third_party


@pytest.fixture
def root_handler():
    """A handler on the root logger, as Hydra's job logging installs; the loggers' state is
    restored afterwards."""
    lightning_logger = logging.getLogger("lightning")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    saved = list(lightning_logger.handlers), list(rank_zero.filters)
    if not lightning_logger.handlers:  # an earlier run in this process removed it
        lightning_logger.addHandler(logging.StreamHandler())
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    root = logging.getLogger()
    root.addHandler(handler)
    yield records
    root.removeHandler(handler)
    lightning_logger.handlers[:] = saved[0]
    rank_zero.filters[:] = saved[1]


def test_lightning_messages_reach_the_console_once_and_tips_not_at_all(root_handler):
    assert logging.getLogger("lightning").handlers  # what lightning/__init__ adds (fixture)
    with warnings.catch_warnings():
        quiet_third_party()
    assert not logging.getLogger("lightning").handlers
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.info("💡 Tip: For seamless cloud logging, try installing litlogger")
    rank_zero.info("GPU available: False, used: False")
    assert [r.getMessage() for r in root_handler] == ["GPU available: False, used: False"]


def test_only_the_known_harmless_warnings_are_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn(
            "Grad strides do not match bucket view strides. This may ...", UserWarning, stacklevel=1
        )
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1
        )
        warnings.warn("the loss is not finite", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["the loss is not finite"]

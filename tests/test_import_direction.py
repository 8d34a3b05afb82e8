"""Imports run one way: the network knows no data, Lightning or Hydra; data knows no network;
inference depends on the network only; training and the command line sit on top."""

from __future__ import annotations

import subprocess
import sys

import pytest

# what importing a part may never bring in (the part's own modules aside)
FORBIDDEN = {
    "derain.models": ("lightning", "hydra", "omegaconf", "derain.data", "derain.training"),
    "derain.inference": (
        "lightning",
        "hydra",
        "derain.data",
        "derain.training",
        "derain.evaluation",
        "derain.cli",
    ),
    "derain.data.datamodule": ("derain.models", "derain.inference", "derain.training"),
    "derain.evaluation.metrics": ("lightning", "hydra", "derain.data", "derain.models"),
}


def _modules_after_import(module: str) -> set[str]:
    """Every module loaded by a fresh interpreter that imports `module` (so that modules an
    earlier test imported do not count)."""
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_a_part_imports_nothing_above_it(module):
    loaded = _modules_after_import(module)
    wrong = sorted(
        name
        for name in loaded
        for banned in FORBIDDEN[module]
        if name == banned or name.startswith(banned + ".")
    )
    assert not wrong, f"importing {module} loads {wrong}"

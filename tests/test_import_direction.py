"""Imports run one way: the network knows no data, Lightning or Hydra; data knows no network;
inference depends on the network only; training and the command line sit on top, and no
command's task (`run(cfg)` in the package it belongs to) imports the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

_INFERENCE = (
    "lightning",
    "hydra",
    "derain.data",
    "derain.training",
    "derain.evaluation",
    "derain.cli",
)

# what importing a part may never bring in (the part's own modules aside)
FORBIDDEN = {
    "derain.models": ("lightning", "hydra", "omegaconf", "derain.data", "derain.training"),
    "derain.inference": _INFERENCE,
    # the tasks of derain-predict, -convert and -export, and the settings they share
    "derain.inference.predict": _INFERENCE,
    "derain.inference.convert": _INFERENCE,
    "derain.inference.settings": _INFERENCE,
    # derain-score's task: images and metrics, no network
    "derain.evaluation.scoring": ("lightning", "hydra", "derain.models", "derain.cli"),
    "derain.evaluation.evaluate": ("derain.cli",),
    "derain.training.tasks": ("derain.cli",),
    "derain.data.synthetic_set": ("derain.models", "derain.inference", "derain.cli"),
    "derain.webapp.demo": ("lightning", "derain.training", "derain.cli"),
    "derain.studies.profile": ("lightning", "derain.training", "derain.cli"),
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

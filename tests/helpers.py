"""Helpers shared by the tests (importable as `helpers`; tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from derain.studies.budgets import SMOKE_OVERRIDES

BIN = Path(sys.executable).parent

# the real configs with the smallest sizes that still exercise every part of training
TINY = list(SMOKE_OVERRIDES)

# the smallest network, for tests that build a DerainModule themselves
TINY_MODEL = {"_target_": "derain.models.ELF", "width": 8, "depth": 1}


def tiny_datamodule():
    """Synthetic training patches and a small light-rain validation set, in this process."""
    from derain.data import DerainDataModule, SyntheticSet

    return DerainDataModule(
        train=SyntheticSet("train"),
        val={"light": SyntheticSet("val", max_side=32)},
        patch_size=32,
        batch_size=2,
        num_workers=0,
        limit=16,
    )


def run_cli(name: str, *args: str, cwd: Path | None = None, check: bool = True, env=None):
    """Runs a console script of this environment; returns the CompletedProcess."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "1", **(env or {})}
    proc = subprocess.run(
        [str(BIN / name), *args], cwd=cwd, capture_output=True, text=True, env=full_env
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{name} {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    return proc


def run_dirs(root: Path, task: str = "train") -> list[Path]:
    """Run folders of `task` under root/logs, oldest first."""
    return sorted((root / "logs" / task / "runs").iterdir())

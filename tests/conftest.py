"""Shared helpers for the test suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from derain.paths import config_dir

BIN = Path(sys.executable).parent


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


@pytest.fixture
def compose_config():
    """Composes a primary config of conf/ with overrides, as the command-line apps do."""

    def _compose(config_name: str, overrides: list[str] | None = None):
        with initialize_config_dir(version_base=None, config_dir=str(config_dir())):
            return compose(config_name=config_name, overrides=overrides or [])

    return _compose

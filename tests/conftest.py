"""Fixtures shared by the test suite."""

from __future__ import annotations

import os

# one thread per test process: the suite runs in parallel (pytest -n 2) on 2 cores, and
# oversubscribed OpenMP threads slow small tensor ops by orders of magnitude
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from derain.paths import config_dir  # noqa: E402
from helpers import TINY, run_cli, run_dirs  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def compose_config():
    """Composes a primary config of conf/ with overrides, as the command-line apps do."""

    def _compose(config_name: str, overrides: list[str] | None = None):
        with initialize_config_dir(version_base=None, config_dir=str(config_dir())):
            return compose(config_name=config_name, overrides=overrides or [])

    return _compose


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny training run shared by tests: (working folder, run folder, stdout)."""
    cwd = tmp_path_factory.mktemp("trained")
    proc = run_cli("derain-train", *TINY, cwd=cwd)
    (run,) = run_dirs(cwd)
    return cwd, run, proc.stdout


@pytest.fixture(scope="session")
def briefly_trained_checkpoint(tmp_path_factory):
    """An elf_tiny checkpoint trained for a few seconds (`elf_checkpoints.train_briefly`) that
    derains light rain clearly better than doing nothing. Trained once per test run: the
    pytest-xdist workers share it through a file lock."""
    from filelock import FileLock

    from inference.elf_checkpoints import train_briefly, write_lightning_checkpoint

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base folders are siblings
    path = root / "briefly_trained.ckpt"
    with FileLock(f"{path}.lock"):
        if not path.is_file():
            write_lightning_checkpoint(train_briefly(), path)
    return path

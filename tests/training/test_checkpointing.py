"""Checkpoint writes that a crash cannot half-finish, and the trainer config that uses them."""

from __future__ import annotations

import errno
import os
import signal

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from derain.paths import config_dir
from derain.training.checkpointing import (
    AtomicCheckpointIO,
    Preemption,
    RandomStates,
    slurm_requeued,
)
from derain.training.tasks import resolve_ckpt_path


def _fail_midway(checkpoint, file, *args, **kwargs):
    file.write(b"half a checkpoint")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 10, "weights": torch.ones(3)}, path)
    monkeypatch.setattr(torch, "save", _fail_midway)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 20, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    kept = torch.load(path, weights_only=True)
    assert kept["global_step"] == 10 and torch.equal(kept["weights"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary left


def test_a_successful_write_replaces_the_checkpoint(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, path)
    io.save_checkpoint({"global_step": 2}, path)
    assert io.load_checkpoint(path, weights_only=True)["global_step"] == 2
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as readable as a plain write


def test_every_trainer_config_writes_checkpoints_atomically(compose_config):
    for trainer in sorted(p.stem for p in (config_dir() / "trainer").glob("*.yaml")):
        cfg = compose_config("train", [f"trainer={trainer}"])
        (plugin,) = cfg.trainer.plugins
        assert isinstance(instantiate(plugin), AtomicCheckpointIO)


def test_random_states_come_back_and_load_without_code(tmp_path):
    import random

    import numpy as np

    callback = RandomStates()
    torch.save(callback.state_dict(), tmp_path / "states.pt")
    drawn = (random.random(), np.random.rand(), torch.rand(1))  # noqa: NPY002
    callback.load_state_dict(torch.load(tmp_path / "states.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1)) == drawn  # noqa: NPY002


def _checkpoint(path, mtime: float, job: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": 1, **({"slurm_job_id": job} if job else {})}, path)
    os.utime(path, (mtime, mtime))
    return path


def _cfg(tmp_path):
    return OmegaConf.create(
        {
            "task_name": "train",
            "paths": {"log_dir": str(tmp_path), "output_dir": str(tmp_path / "new")},
        }
    )


def test_last_is_the_newest_checkpoint_lightnings_slurm_saves_included(tmp_path):
    runs = tmp_path / "train" / "runs"
    _checkpoint(runs / "a" / "checkpoints" / "last.ckpt", 100)
    hpc = _checkpoint(runs / "b" / "hpc_ckpt_1.ckpt", 200)
    _checkpoint(runs / "c" / "checkpoints" / "last.ckpt", 150)
    assert resolve_ckpt_path("last", _cfg(tmp_path)) == str(hpc)


def test_a_requeued_slurm_job_resumes_its_own_newest_checkpoint(tmp_path, monkeypatch):
    runs = tmp_path / "train" / "runs"
    own = _checkpoint(runs / "a" / "checkpoints" / "last.ckpt", 100, job="77")
    _checkpoint(runs / "b" / "checkpoints" / "last.ckpt", 200, job="78")  # another job's, newer
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert slurm_requeued()
    assert resolve_ckpt_path(None, _cfg(tmp_path), requeued=True) == str(own)
    monkeypatch.setenv("SLURM_JOB_ID", "79")  # a job that saved nothing yet starts afresh
    assert resolve_ckpt_path(None, _cfg(tmp_path), requeued=True) is None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert not slurm_requeued()


def test_preemption_names_a_wrong_requeue_signal_and_its_setting(tmp_path):
    assert Preemption(tmp_path, requeue_signal="usr2").requeue_signal == signal.SIGUSR2
    assert Preemption(tmp_path, requeue_signal=None).signals == [signal.SIGTERM]
    with pytest.raises(ValueError, match=r"callbacks.preemption.requeue_signal='USR9'"):
        Preemption(tmp_path, requeue_signal="USR9")
    with pytest.raises(ValueError, match=r"callbacks.preemption.check_every_n_steps"):
        Preemption(tmp_path, check_every_n_steps=0)

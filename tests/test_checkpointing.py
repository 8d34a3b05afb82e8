"""Checkpoint writes that a crash cannot half-finish, and the trainer config that uses them."""

from __future__ import annotations

import errno

import pytest
import torch
from hydra.utils import instantiate

from derain.checkpointing import AtomicCheckpointIO, RandomStates


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


def test_every_trainer_config_writes_checkpoints_atomically(compose_config):
    for trainer in ("cpu", "gpu", "ddp", "ddp_cpu", "debug"):
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

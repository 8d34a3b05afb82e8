"""Helpers of the train task that need no training run."""

from __future__ import annotations

import torch

from derain.training import tasks as training


def test_after_cpu_ddp_the_testing_process_takes_the_other_processes_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(training, "_USER_THREADS", None)
        training._use_idle_cores(world_size=2)
        assert torch.get_num_threads() == 2
        # a user's OMP_NUM_THREADS is left as they set it
        torch.set_num_threads(1)
        monkeypatch.setattr(training, "_USER_THREADS", "1")
        training._use_idle_cores(world_size=2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

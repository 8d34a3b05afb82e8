"""Process memory: exact activation counting, the allocator switch, batch sizes that fit."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from derain.runtime.memory import ActivationMemory, fitting_batch


def test_activation_memory_tracks_the_peak_of_live_tensors():
    with ActivationMemory() as memory:
        a = torch.empty(1000, dtype=torch.float32)  # 4000 bytes
        b = torch.empty(500, dtype=torch.float32)  # 2000 bytes, both alive: 6000
        del a
        c = torch.empty(250, dtype=torch.float32)  # 2000 + 1000 alive
        del b, c
    assert memory.peak_bytes == 6000
    assert memory.current_bytes == 0


def test_views_share_storage_and_are_counted_once():
    with ActivationMemory() as memory:
        a = torch.zeros(100, 10)
        views = [a[i] for i in range(10)] + [a.t(), a.view(-1)]
        del views, a
    assert memory.peak_bytes == 4000


_RSS_AFTER_FREE = """
import sys
import torch
from derain.runtime.memory import retain_freed_memory

def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

retained = retain_freed_memory() if sys.argv[1] == "retain" else False
before = resident()
x = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page touched
del x
print(retained, resident() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_retained_memory_stays_resident_for_reuse_and_default_memory_goes_back():
    def run(mode: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _RSS_AFTER_FREE, mode],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return out[0], int(out[1])

    default_flag, default_growth = run("default")
    retained_flag, retained_growth = run("retain")
    assert default_flag == "False" and retained_flag == "True"
    assert default_growth < 16 * 2**20  # the 64 MiB block went back to the OS on free
    assert retained_growth > 48 * 2**20  # it stayed, ready for the next activation


def test_fitting_batch_extrapolates_a_batch_1_step_to_the_device_memory(monkeypatch):
    gib = 2**30
    memory = {"allocated": 0, "peak": 0}

    def step(batch: int) -> None:  # 1 GiB stays (weights, Adam), 2 GiB per sample while running
        memory["allocated"] = 1 * gib
        memory["peak"] = max(memory["peak"], memory["allocated"] + 2 * gib * batch)

    class Properties:
        total_memory = 24 * gib

    cuda = torch.cuda
    monkeypatch.setattr(cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: memory["allocated"])
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: memory["peak"])
    monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda device=None: memory.update(peak=0))
    monkeypatch.setattr(cuda, "get_device_properties", lambda device=None: Properties())
    # 60% of 24 GiB less the 1 GiB that stays: 13.4 GiB, 4 samples of 2 GiB (8 would need 16)
    assert fitting_batch(step, torch.device("cuda"), limit=16, share=0.6) == 4
    assert fitting_batch(step, torch.device("cuda"), limit=2, share=0.6) == 2
    assert fitting_batch(step, torch.device("cpu"), limit=16) == 16  # no memory to measure

"""Process memory at run time: the allocator switch and exact activation-memory counting."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def retain_freed_memory() -> bool:
    """Makes this process keep the memory it frees for reuse instead of handing it back to the
    OS (glibc's malloc on Linux; elsewhere it does nothing and returns False).

    By default glibc serves every block over 128 KiB–32 MiB by a fresh `mmap` and unmaps it when
    it is freed, so each new activation tensor page-faults on zeroed pages: on 2 CPU cores that
    was 0.4 s of kernel time in a 1.6 s `elf` forward pass at 256², and half of the CPU time at
    1024². With every block served from the heap and the heap never trimmed, a second pass
    reuses the first one's memory. Process-wide and for the rest of the process: memory stays at
    its peak (as with PyTorch's CUDA caching allocator). `LD_PRELOAD`-ing jemalloc or tcmalloc
    is the alternative for code that cannot call this. Training, evaluation, `derain-predict`,
    `derain-profile` and `derain.load` call it by default (`Restorer` then plans tiles for the
    memory the kept heap holds: `derain.inference.restorer.RETAINED_MEMORY_OVERHEAD`).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


class ActivationMemory(TorchDispatchMode):
    """Peak bytes of tensor storage created while the mode is active (activations and
    temporaries; parameters and inputs made before entering are not counted).

    Exact and allocator-independent: every op output's storage is counted once and released when
    Python frees it, so the figure is the same on every run and every machine.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current_bytes = 0
        self.peak_bytes = 0
        self._live: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self._live:
            return
        self._live.add(key)
        self.current_bytes += size
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        weakref.finalize(storage, self._release, key, size)

    def _release(self, key: int, size: int) -> None:
        self._live.discard(key)
        self.current_bytes -= size


def fitting_batch(
    step: Callable[[int], object],
    device: torch.device,
    limit: int = 16,
    share: float = 0.6,
) -> int:
    """The largest power of two ≤ `limit` whose `step(batch)` should fit in `share` of a CUDA
    device's memory, extrapolated from one `step(1)` (run twice: the first allocates what
    stays, such as optimiser moments). On other devices, `limit`.

    The memory a training step needs beyond what stays allocated grows linearly with the batch
    (activations); cuDNN workspaces and fragmentation are what `share` leaves room for.
    """
    if device.type != "cuda":
        return limit
    step(1)
    torch.cuda.synchronize(device)
    staying = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step(1)
    per_sample = max(1, torch.cuda.max_memory_allocated(device) - staying)
    budget = share * torch.cuda.get_device_properties(device).total_memory - staying
    batch = limit
    while batch > 1 and batch * per_sample > budget:
        batch //= 2
    return batch


def peak_activation_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Peak activation memory of one inference forward pass, in bytes."""
    with torch.inference_mode(), ActivationMemory() as memory:
        model(example)
    return memory.peak_bytes

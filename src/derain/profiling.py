"""Cost and speed measurements of models: parameters, MACs, latency, memory, efficiency.

Efficiency relates a model's achieved MAC/s to what the same machine sustains on a dense,
well-shaped convolution (bias-free 3×3, 48→48 channels, 1×48×256×256), so figures from
different machines can be compared.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode


def retain_freed_memory() -> bool:
    """Makes this process keep the memory it frees for reuse instead of handing it back to the
    OS (glibc's malloc on Linux; elsewhere it does nothing and returns False).

    By default glibc serves every block over 128 KiB–32 MiB by a fresh `mmap` and unmaps it when
    it is freed, so each new activation tensor page-faults on zeroed pages: on 2 CPU cores that
    was 0.4 s of kernel time in a 1.6 s `elf` forward pass at 256², and half of the CPU time at
    1024². With every block served from the heap and the heap never trimmed, a second pass
    reuses the first one's memory. Process-wide and for the rest of the process: memory stays at
    its peak (as with PyTorch's CUDA caching allocator). `LD_PRELOAD`-ing jemalloc or tcmalloc
    is the alternative for code that cannot call this.
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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (total flops / 2, torch.utils.flop_counter)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    return counter.get_total_flops() // 2


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object], runs: int, warmup: int, device: torch.device
) -> list[float]:
    """Wall-clock seconds of `runs` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


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


@dataclass
class ConvThroughput:
    gmacs_per_s: float
    layout: str  # the faster of "contiguous" and "channels_last"


def dense_conv_throughput(device: torch.device | str = "cpu", runs: int = 5) -> ConvThroughput:
    """The machine's dense-convolution rate: bias-free 3×3 conv 48→48 on 1×48×256×256,
    best of `runs`, the faster of the contiguous and channels_last layouts."""
    device = torch.device(device)
    conv = nn.Conv2d(48, 48, 3, padding=1, bias=False).to(device)
    x = torch.randn(1, 48, 256, 256, device=device)
    macs = 48 * 48 * 9 * 256 * 256
    best: ConvThroughput | None = None
    for layout, fmt in (
        ("contiguous", torch.contiguous_format),
        ("channels_last", torch.channels_last),
    ):
        layer = conv.to(memory_format=fmt)
        inp = x.contiguous(memory_format=fmt)
        with torch.inference_mode():
            seconds = min(time_call(lambda: layer(inp), runs, warmup=1, device=device))  # noqa: B023
        rate = ConvThroughput(macs / seconds / 1e9, layout)
        if best is None or rate.gmacs_per_s > best.gmacs_per_s:
            best = rate
    return best


@dataclass
class ModelProfile:
    name: str
    params: int
    gmacs: float
    size: int
    batch: int
    latency_ms_median: float
    latency_ms_runs: list[float]
    peak_memory_mib: float  # activations of one forward pass (ActivationMemory)
    gmacs_per_s: float
    efficiency: float | None
    reference_params: int | None = None
    reference_gmacs: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def profile_model(
    name: str,
    model: nn.Module,
    size: int = 256,
    batch: int = 1,
    runs: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    conv_gmacs_per_s: float | None = None,
    reference_params: int | None = None,
    reference_gmacs: float | None = None,
) -> ModelProfile:
    """Profiles inference of `model` on a batch×3×size×size input (eval mode, no autograd)."""
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    macs = count_macs(model, x)
    with torch.inference_mode():
        times = time_call(lambda: model(x), runs, warmup, device)
    peak_bytes = peak_activation_bytes(model, x)
    median = statistics.median(times)
    rate = macs / 1e9 / median
    return ModelProfile(
        name=name,
        params=count_parameters(model),
        gmacs=macs / 1e9,
        size=size,
        batch=batch,
        latency_ms_median=median * 1e3,
        latency_ms_runs=[t * 1e3 for t in times],
        peak_memory_mib=peak_bytes / 2**20,
        gmacs_per_s=rate,
        efficiency=None if not conv_gmacs_per_s else rate / conv_gmacs_per_s,
        reference_params=reference_params,
        reference_gmacs=reference_gmacs,
    )

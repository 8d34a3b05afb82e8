"""Cost and speed measurements of models: parameters, MACs, latency, memory, efficiency.

Efficiency relates a model's achieved MAC/s to what the same machine sustains on a dense,
well-shaped convolution (bias-free 3×3, 48→48 channels, 1×48×256×256), so figures from
different machines can be compared.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from derain.runtime.memory import peak_activation_bytes


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

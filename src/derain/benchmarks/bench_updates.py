"""What the per-step weight updates cost besides the network: the EMA update and the Adam step.

Times, on one network preset's parameters with random gradients, in interleaved rounds (so a
machine that gets busier moves both sides of each ratio alike):
  - EMA: Lightning's `EMAWeightAveraging` update (one tensor at a time) against
    `derain.training.callbacks.EMA` (foreach kernels), through the `AveragedModel` each one builds;
  - Adam: torch's default CPU implementation (a loop over tensors) against `fused=True`.
Prints milliseconds per update and the speed-up, each a median over rounds.

    python -m derain.benchmarks.bench_updates                  # elf_tiny, 1 thread
    python -m derain.benchmarks.bench_updates --preset elf --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch.optim.swa_utils import AveragedModel

from derain.models import ELF
from derain.training.callbacks import EMA


def averaged_model(callback, model: torch.nn.Module) -> AveragedModel:
    """The `AveragedModel` a Lightning weight-averaging callback would build for `model`."""
    return AveragedModel(model, use_buffers=True, **callback._kwargs)


def time_per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="elf_tiny")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20, help="updates timed per round")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ELF.from_preset(args.preset)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    print(
        f"{args.preset}: {sum(p.numel() for p in params):,} parameters in {len(params)} tensors,"
        f" {args.threads} thread(s)"
    )

    contenders = {
        "EMA, per tensor (Lightning)": averaged_model(EMAWeightAveraging(decay=0.99), model),
        "EMA, foreach (derain.training.callbacks.EMA)": averaged_model(EMA(decay=0.99), model),
    }
    updates = {name: (lambda a=a: a.update_parameters(model)) for name, a in contenders.items()}
    for name, kwargs in {"Adam, default": {}, "Adam, fused=True": {"fused": True}}.items():
        optimizer = torch.optim.Adam(params, lr=1e-9, **kwargs)
        updates[name] = optimizer.step
    for update in updates.values():  # first calls allocate state
        update()
        update()
    times: dict[str, list[float]] = {name: [] for name in updates}
    for _ in range(args.rounds):
        for name, update in updates.items():
            times[name].append(time_per_call(update, args.calls))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, ms in medians.items():
        print(f"  {name:38s} {ms:7.2f} ms per update")
    names = list(medians)
    for slow, fast in ((names[0], names[1]), (names[2], names[3])):
        print(f"  speed-up {fast.split(',')[1].strip():28s} {medians[slow] / medians[fast]:5.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

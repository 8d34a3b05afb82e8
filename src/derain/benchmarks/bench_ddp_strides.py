"""Cost of DDP's "grad strides do not match bucket view strides" warning for elf_tiny on CPU.

DDP copies every gradient into a flat bucket after the backward pass. With channels-last feature
maps, depthwise and 1×1 convolution weights get gradients whose strides differ from their
parameters' in size-1 dimensions only. This times that copy for the gradients as they come and
for the same gradients with the bucket's strides.

    OMP_NUM_THREADS=1 python -m derain.benchmarks.bench_ddp_strides
"""

from __future__ import annotations

import time

import torch

from derain.models import ELF


def _best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny").train()
    model(torch.rand(4, 3, 64, 64)).image.mean().backward()
    params = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad for p in params]
    odd = [g for g, p in zip(grads, params, strict=True) if g.stride() != p.stride()]
    flat = torch.empty(sum(g.numel() for g in grads))
    views, offset = [], 0
    for g in grads:
        views.append(flat[offset : offset + g.numel()].view(g.shape))
        offset += g.numel()
    matched = [
        g.contiguous() if g.stride() != v.stride() else g for g, v in zip(grads, views, strict=True)
    ]
    print(
        f"{len(odd)} of {len(grads)} gradients have other strides than their parameter "
        f"({sum(g.numel() for g in odd)} elements), all in the parameter's memory order: "
        f"{all(g.is_contiguous() for g in odd)}"
    )
    for name, gs in (("as they come", grads), ("with the bucket's strides", matched)):

        def copy(gs=gs):
            for view, g in zip(views, gs, strict=True):
                view.copy_(g)

        print(
            f"copy into the bucket, gradients {name}: {_best_of(200, copy) * 1e6:.0f} µs (best of 200)"
        )


if __name__ == "__main__":
    main()

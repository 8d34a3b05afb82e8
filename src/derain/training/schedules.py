"""Learning-rate schedules, some fitted to a run's length (steps, and optionally its time limit).

A `scheduler` group config (conf/scheduler/*.yaml) is a partial `(optimizer, trainer) ->
Lightning lr_scheduler config` (the dict `configure_optimizers` returns under "lr_scheduler"):
`cosine_schedule` and `step_schedule`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.callbacks import Timer


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.01,
    elapsed_fraction: Callable[[], float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_steps`, then cosine decay to `min_lr_ratio`·lr at `total_steps`.

    With `elapsed_fraction` (a function returning the share of a time budget used so far, read at
    every scheduler step), the decay's progress is the larger of the step share and the time
    share: the learning rate reaches its floor when either the steps or the time run out.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if elapsed_fraction is not None:
            progress = max(progress, elapsed_fraction())
        progress = min(1.0, progress)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


TIME_SHARE_SYNC_EVERY = 25
"""Under several processes, the time share of `max_time_fraction` is rank 0's, fetched every this
many calls (scheduler steps) rather than at each: a broadcast waits for every process."""


def max_time_fraction(trainer: Any) -> Callable[[], float] | None:
    """A function returning the share of the trainer's `max_time` spent in training so far
    (resumed runs included), or None when the trainer has no time limit.

    Under several processes all of them must keep the same learning rate, so the share is rank
    0's clock, broadcast at the first call and then every `TIME_SHARE_SYNC_EVERY` calls (every
    process calls it once per scheduler step), and held in between.
    """
    timers = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
    if not timers or timers[0].time_remaining() is None:
        return None
    timer = timers[0]
    shared = {"calls": 0, "share": 0.0}

    def local_share() -> float:
        elapsed = timer.time_elapsed("train")
        return elapsed / max(1e-9, elapsed + timer.time_remaining("train"))

    def fraction() -> float:
        if trainer.world_size == 1:
            return local_share()
        if shared["calls"] % TIME_SHARE_SYNC_EVERY == 0:
            shared["share"] = float(trainer.strategy.broadcast(local_share(), src=0))
        shared["calls"] += 1
        return shared["share"]

    return fraction


def cosine_schedule(
    optimizer: torch.optim.Optimizer,
    trainer: Any,
    warmup_steps: int,
    total_steps: int | None = None,
    min_lr_ratio: float = 0.01,
    follow_max_time: bool = False,
) -> dict[str, Any]:
    """`warmup_cosine`, stepped at every optimiser step (conf/scheduler/cosine.yaml).

    `total_steps`: None fits the decay to the run (`trainer.estimated_stepping_batches`);
    `follow_max_time`: the decay also follows the trainer's `max_time` (`max_time_fraction`),
    so a run cut by its time limit still ends at the floor learning rate.
    """
    total = total_steps or trainer.estimated_stepping_batches
    follow = max_time_fraction(trainer) if follow_max_time else None
    scheduler = warmup_cosine(optimizer, warmup_steps, int(total), min_lr_ratio, follow)
    return {"scheduler": scheduler, "interval": "step"}


def step_schedule(
    optimizer: torch.optim.Optimizer,
    trainer: Any,
    step_size: int,
    gamma: float,
    interval: str = "epoch",
) -> dict[str, Any]:
    """torch's `StepLR`: the learning rate times `gamma` every `step_size` epochs
    (`interval="epoch"`) or optimiser steps (`interval="step"`) (conf/scheduler/step.yaml)."""
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    return {"scheduler": scheduler, "interval": interval}

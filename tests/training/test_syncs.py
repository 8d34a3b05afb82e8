"""The training loop reads no tensor on the host between logging intervals, with the shipped
configs (progress bar included): on a GPU each such read makes the CPU wait for the device.
Nor does it call a collective there (under DDP each one waits for every process)."""

from __future__ import annotations

import sys
from collections import defaultdict

import lightning.pytorch as pl
import torch

from derain.training import tasks
from helpers import TINY

LOG_EVERY = 4
STEPS = 12
# Tensor methods that copy a value to the host (on a GPU: wait for every queued kernel)
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
# host-side by design whatever the device: the optimiser's step counters (Adam without
# fused/capturable), and the data loader's work (synthetic rain is drawn on the CPU, in loader
# workers when data.num_workers > 0)
HOST_SIDE = ("/torch/optim/", "/torch/utils/data/")
# what the strategy offers for several processes (no-ops in one, counted all the same)
COLLECTIVES = ("broadcast", "reduce", "barrier", "all_gather")


class HostReads(pl.Callback):
    """Counts host reads of tensors per training batch, from the start of one batch to the
    start of the next (Lightning logs after the batch-end hooks)."""

    def __init__(self) -> None:
        self.batch: int | None = None
        self.step_after: dict[int, int] = {}  # batch → global step once it is done
        self.reads: dict[int, list[str]] = defaultdict(list)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch = batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step_after[batch_idx] = trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.batch = None

    def on_train_end(self, trainer, pl_module) -> None:
        self.batch = None

    def record(self, name: str) -> None:
        if self.batch is None:
            return
        caller = sys._getframe(2)
        frame = caller
        while frame is not None:
            if any(part in frame.f_code.co_filename.replace("\\", "/") for part in HOST_SIDE):
                return
            frame = frame.f_back
        where = f"{caller.f_code.co_filename}:{caller.f_lineno}"
        self.reads[self.batch].append(f"{name} from {where}")


def _wrap(counter: HostReads, owner: type, name: str):
    original = getattr(owner, name)

    def wrapper(self, *args, **kwargs):
        counter.record(name)
        return original(self, *args, **kwargs)

    return wrapper


def test_training_steps_read_nothing_on_the_host_outside_the_logging_interval(
    compose_config, tmp_path, monkeypatch
):
    overrides = [o for o in TINY if not o.startswith(("data.limit", "trainer.max_steps"))]
    overrides.remove("callbacks.progress_bar=null")  # the shipped progress bar stays
    cfg = compose_config(
        "train",
        [
            *overrides,
            "data.limit=64",  # 32 steps per epoch: no epoch end among the counted steps
            f"trainer.max_steps={STEPS}",
            f"trainer.log_every_n_steps={LOG_EVERY}",
            "test=false",
            f"paths.output_dir={tmp_path}",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
    )
    counter = HostReads()
    shipped = tasks.instantiate_callbacks
    monkeypatch.setattr(tasks, "instantiate_callbacks", lambda c: [*shipped(c), counter])
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, _wrap(counter, torch.Tensor, name))
    for name in COLLECTIVES:
        strategy = pl.strategies.SingleDeviceStrategy
        monkeypatch.setattr(strategy, name, _wrap(counter, strategy, name))
    tasks.train(cfg)

    assert sorted(counter.step_after.values()) == list(range(1, STEPS + 1))
    at_interval = {b for b, step in counter.step_after.items() if step % LOG_EVERY == 0}
    elsewhere = {b: reads for b, reads in counter.reads.items() if b not in at_interval}
    assert elsewhere == {}
    # the loggers and the progress bar do read the loss, at their interval
    assert all(counter.reads[b] for b in at_interval)

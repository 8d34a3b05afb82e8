"""A callback that counts, per training batch, what makes a step wait: host reads of tensors (on
a GPU, a wait for every queued kernel) and collectives (under DDP, a wait for every process).

Used by the tests as `+callbacks.syncs._target_=sync_counting.SyncCounter
+callbacks.syncs.out=FOLDER` (tests/ on PYTHONPATH): each process writes `rank<N>.json` there at
the end of training, {"step_after": {batch: global step once done}, "waits": {batch: [what and
where]}}. A batch's window runs from its start to the next one's (Lightning logs after the
batch-end hooks); validation and epoch ends are outside every window.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.distributed

# Tensor methods that copy a value to the host
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
# host-side by design whatever the device: the optimiser's step counters (Adam without
# fused/capturable), and the data loader's work (synthetic rain is drawn on the CPU, in loader
# workers when data.num_workers > 0)
HOST_SIDE = ("/torch/optim/", "/torch/utils/data/")
# collectives, as the strategy offers them (no-ops in one process, counted all the same) and as
# torch.distributed runs them under several
STRATEGY_COLLECTIVES = ("broadcast", "reduce", "barrier", "all_gather")
DISTRIBUTED = (
    "broadcast",
    "all_reduce",
    "reduce",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "broadcast_object_list",
    "barrier",
    "gather",
    "scatter",
)


class SyncCounter(pl.Callback):
    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.batch: int | None = None
        self.step_after: dict[int, int] = {}
        self.waits: dict[int, list[str]] = defaultdict(list)
        self._originals: list[tuple[object, str, object]] = []

    def _wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        counter = self

        def wrapper(*args, **kwargs):
            counter.record(label)
            return original(*args, **kwargs)

        self._originals.append((owner, name, original))
        setattr(owner, name, wrapper)

    def setup(self, trainer, pl_module, stage) -> None:
        if stage != "fit":
            return
        for name in HOST_READS:
            self._wrap(torch.Tensor, name, f"Tensor.{name}")
        for name in STRATEGY_COLLECTIVES:
            self._wrap(pl.strategies.SingleDeviceStrategy, name, f"strategy.{name}")
        for name in DISTRIBUTED:
            self._wrap(torch.distributed, name, f"torch.distributed.{name}")

    def _unwrap(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals = []

    def record(self, label: str) -> None:
        if self.batch is None:
            return
        caller = sys._getframe(2)
        frame = caller
        while frame is not None:
            if any(part in frame.f_code.co_filename.replace("\\", "/") for part in HOST_SIDE):
                return
            frame = frame.f_back
        self.waits[self.batch].append(f"{label} from {caller.f_code.co_filename}:{caller.f_lineno}")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch = batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step_after[batch_idx] = trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.batch = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self.batch = None

    def on_train_end(self, trainer, pl_module) -> None:
        self.batch = None
        self._unwrap()
        self.out.mkdir(parents=True, exist_ok=True)
        report = {"step_after": self.step_after, "waits": self.waits}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._unwrap()


def waits_outside(report: dict, every: int) -> dict[int, list[str]]:
    """The waits of the batches whose step is not a multiple of `every` (the logging interval),
    from a `rank<N>.json` report."""
    step_after = {int(b): s for b, s in report["step_after"].items()}
    return {
        int(b): waits
        for b, waits in report["waits"].items()
        if waits and step_after.get(int(b), 0) % every
    }

"""Callbacks for what Lightning's own do not record."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn


class EMA(EMAWeightAveraging):
    """Lightning's `EMAWeightAveraging`, updating all weights at once with foreach kernels, and
    without waiting for the GPU.

    The parent averages tensor by tensor, which costs more than the update itself with the
    hundreds of small tensors of a compact network (elf_tiny, one CPU thread: 35.5 ms against
    12.5 ms per update, `python benchmarks/bench_updates.py`). Its averaged model also reads its
    update counter, a device tensor, on the host twice per update (a GPU sync every step); here
    the count is kept on the host as well, read from the device once per fit. Same arguments,
    same averages (to float rounding), same checkpoints.
    """

    def __init__(
        self,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        WeightAveraging.__init__(
            self, device=device, use_buffers=use_buffers, multi_avg_fn=get_ema_multi_avg_fn(decay)
        )
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch
        self._updates: int | None = None  # host copy of the averaged model's n_averaged

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._updates = None

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        self._updates = None  # a resumed average has its own count

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # as the parent: step_idx is zero-based, global_step counts optimizer steps taken
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=step_idx):
            self._update_average(pl_module)
            self._latest_update_step = trainer.global_step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch > self._latest_update_epoch and self.should_update(epoch_idx=epoch):
            self._update_average(pl_module)
            self._latest_update_epoch = epoch

    @torch.no_grad()
    def _update_average(self, pl_module: pl.LightningModule) -> None:
        """`AveragedModel.update_parameters` with the update count read on the host."""
        average = self._average_model
        if self._updates is None:
            self._updates = int(average.n_averaged)
        if self._use_buffers:
            averaged = [*average.module.parameters(), *average.module.buffers()]
            current = [*pl_module.parameters(), *pl_module.buffers()]
        else:
            averaged, current = list(average.parameters()), list(pl_module.parameters())
        groups: dict[tuple, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for a, c in zip(averaged, current, strict=True):
            a = a.detach()
            group = groups.setdefault((a.device, a.dtype), ([], []))
            group[0].append(a)
            group[1].append(c.detach().to(a.device))
        for targets, sources in groups.values():
            if self._updates == 0:
                torch._foreach_copy_(targets, sources)
            else:
                average.multi_avg_fn(targets, sources, average.n_averaged)
        average.n_averaged += 1
        self._updates += 1


class ThroughputRecorder(Callback):
    """Training throughput of a run, written to `throughput.json` in the run folder.

    Counts samples over all processes (per-device batch × world size) and times each training
    epoch from its first batch to its last one (validation excluded), so hardware sweeps
    (devices, precision, batch size) yield a scaling table. Also logs `train/samples_per_s`.
    """

    def __init__(self, filename: str = "throughput.json") -> None:
        self.filename = filename
        self.epoch_seconds: list[float] = []
        self.epoch_samples: list[int] = []
        # a run resumed mid-epoch starts without on_train_epoch_start
        self._start: float | None = None
        self._end = 0.0
        self._samples = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = None
        self._samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._samples += len(batch["rainy"]) * trainer.world_size
        self._end = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._start is None or self._samples == 0:
            return
        seconds = self._end - self._start
        self.epoch_seconds.append(seconds)
        self.epoch_samples.append(self._samples)
        pl_module.log(
            "train/samples_per_s", self._samples / max(seconds, 1e-9), rank_zero_only=True
        )

    def summary(self, trainer: pl.Trainer) -> dict:
        # the first epoch carries start-up costs (worker spawn, allocator warm-up)
        steady = slice(1, None) if len(self.epoch_seconds) > 1 else slice(None)
        seconds, samples = self.epoch_seconds[steady], self.epoch_samples[steady]
        return {
            "world_size": trainer.world_size,
            "num_nodes": trainer.num_nodes,
            "devices_per_node": trainer.num_devices,
            "accelerator": type(trainer.accelerator).__name__,
            "precision": str(trainer.precision),
            "epochs_timed": len(seconds),
            "samples_per_s": sum(samples) / sum(seconds) if seconds else None,
            "s_per_epoch": statistics.mean(seconds) if seconds else None,
            "global_steps": trainer.global_step,
        }

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self.epoch_seconds:
            path = Path(trainer.default_root_dir) / self.filename
            path.write_text(json.dumps(self.summary(trainer), indent=2))

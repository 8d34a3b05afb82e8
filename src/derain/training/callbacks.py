"""Callbacks for what Lightning's own do not record."""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EMAWeightAveraging,
    RichProgressBar,
    WeightAveraging,
)
from torch.optim.swa_utils import get_ema_multi_avg_fn

log = logging.getLogger(__name__)


class EMA(EMAWeightAveraging):
    """Lightning's `EMAWeightAveraging`, updating all weights at once with foreach kernels, and
    without waiting for the GPU.

    The parent averages tensor by tensor, which costs more than the update itself with the
    hundreds of small tensors of a compact network (elf_tiny, one CPU thread: 35.5 ms against
    12.5 ms per update, `python -m derain.benchmarks.bench_updates`). Its averaged model also reads its
    update counter, a device tensor, on the host twice per update (a GPU sync every step); here
    the count is kept on the host as well, read from the device once per fit, before its
    first step. Same arguments, same averages (to float rounding), same checkpoints.
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
        self._ended_with_average = False

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._ended_with_average = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a fit resumed from a checkpoint already at max_steps runs no training loop, so
        # on_train_end never copies the average in: the module would keep the checkpoint's
        # trained (not averaged) weights for the test that follows
        if not self._ended_with_average and getattr(self, "_average_model", None) is not None:
            self._copy_average_to_current(pl_module)
            self._ended_with_average = True

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        self._updates = None  # a resumed average has its own count

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the one read of the device counter, before the steps (after a resume's restore)
        if getattr(self, "_average_model", None) is not None:
            self._updates = int(self._average_model.n_averaged)

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
        # every process measures the same all-process rate on its own clock: the mean of them
        pl_module.log("train/samples_per_s", self._samples / max(seconds, 1e-9), sync_dist=True)

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


class SkippedSamples(Callback):
    """Counts the training and validation samples that could not be read and were replaced.

    Datasets list the files they skipped in each item ("skipped", see `PairedDataset`), so
    the count is right with any number of loader workers; at each epoch end the counts of all
    processes are summed, logged (`data/skipped_train`, `data/skipped_val`), written to
    `filename` in the run folder with the files' names (and those left out at set-up), and
    checked against the data module's limits (`data.max_bad_fraction`).
    """

    def __init__(self, filename: str = "skipped_samples.json") -> None:
        self.filename = filename
        self.skipped = {"train": 0, "val": 0}  # samples replaced, over the whole run
        self.files: dict[str, set[str]] = {}  # set key ("data.train"...) → distinct bad files
        self._epoch = {"train": 0, "val": 0}

    def state_dict(self) -> dict:
        return {
            "skipped": dict(self.skipped),
            "files": {k: sorted(v) for k, v in self.files.items()},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped.update(state_dict.get("skipped", {}))
        self.files = {k: set(v) for k, v in state_dict.get("files", {}).items()}

    def _collect(self, stage: str, key: str, batch) -> None:
        names = [n for entry in batch.get("skipped", ()) if entry for n in entry.split("\n")]
        self._epoch[stage] += len(names)
        if names:
            self.files.setdefault(key, set()).update(names)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._collect("train", "data.train", batch)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        names = getattr(trainer.datamodule, "val_set_names", None) or ["val"]
        self._collect("val", f"data.val.{names[dataloader_idx]}", batch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_epoch(trainer, pl_module, "train")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._close_epoch(trainer, pl_module, "val")

    def _close_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        local = torch.tensor(float(self._epoch[stage]), device=pl_module.device)  # NCCL: on GPU
        count = trainer.strategy.reduce(local, reduce_op="sum")
        self._epoch[stage] = 0
        self.skipped[stage] += int(count)
        self._gather_files(trainer)
        # the count is summed over the processes above, the same on each: sync_dist says so to
        # Lightning (which otherwise advises it) at the cost of one scalar all-reduce
        pl_module.log(f"data/skipped_{stage}", float(self.skipped[stage]), sync_dist=True)
        if int(count):
            log.warning(
                "%d unreadable %s sample(s) skipped this epoch (%d in the run), listed in %s",
                int(count),
                "training" if stage == "train" else "validation",
                self.skipped[stage],
                Path(trainer.default_root_dir) / self.filename,
            )
        if trainer.is_global_zero:
            self.write(trainer)
        self._check_limits(trainer)

    def _gather_files(self, trainer: pl.Trainer) -> None:
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            # the group's size, not the trainer's: a sweep's later jobs in one process may
            # find an earlier job's group still in place
            everyone: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(everyone, self.files)
            for files in everyone:
                for key, names in (files or {}).items():
                    self.files.setdefault(key, set()).update(names)

    def _check_limits(self, trainer: pl.Trainer) -> None:
        datamodule = trainer.datamodule
        limits = getattr(datamodule, "bad_sample_limits", {})
        excluded = getattr(datamodule, "excluded", {})
        for key, names in self.files.items():
            limit = limits.get(key)
            bad = names | set(excluded.get(key, ()))
            if limit is not None and len(bad) > limit:
                from derain.data.checks import TooManyBadSamplesError

                listed = "\n".join(f"  {name}" for name in sorted(bad)[:50])
                raise TooManyBadSamplesError(
                    f"{len(bad)} files of {key} cannot be read, more than the {limit} allowed "
                    f"(data.max_bad_fraction):\n{listed}\nFix or remove these files, or raise "
                    "data.max_bad_fraction"
                )

    def write(self, trainer: pl.Trainer) -> Path:
        """Writes the counts and file names to the run folder; returns the file."""
        excluded = getattr(trainer.datamodule, "excluded", {})
        report = {
            "skipped_samples": self.skipped,
            "skipped_files": {k: sorted(v) for k, v in sorted(self.files.items())},
            "left_out_at_setup": {k: sorted(v) for k, v in sorted(excluded.items())},
        }
        path = Path(trainer.default_root_dir) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        return path

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.write(trainer)


class ProgressBar(RichProgressBar):
    """Lightning's `RichProgressBar`, also showing logged training values (`shown`, e.g.
    train/loss) as they were at the last logging interval (`trainer.log_every_n_steps`).

    A value logged with `prog_bar=True` is turned into a Python number at every batch, shown
    or not: on a GPU, a wait for the device at every step. Here the values are read on the
    host once per logging interval, when the loggers read them too.

    Args:
        shown: names of values logged in `training_step` to show.
        **kwargs: `RichProgressBar`'s (refresh_rate, leave, theme, ...).
    """

    def __init__(self, shown: Sequence[str] = ("train/loss",), **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown = list(shown)
        self._values: dict[str, float] = {}
        self._read_at: int | None = None

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        step = trainer.global_step
        interval = max(1, trainer.log_every_n_steps)
        if trainer.training and step != self._read_at and step % interval == 0:
            self._read_at = step
            metrics = trainer.callback_metrics
            for name in self.shown:
                if name in metrics:
                    self._values[name] = float(metrics[name])
        return {**items, **{name: f"{value:.4g}" for name, value in self._values.items()}}

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning writes "Epoch 2/-2" for a run bounded by steps alone (max_epochs=-1)
        if self.trainer.max_epochs is None or self.trainer.max_epochs < 0:
            return f"Epoch {current_epoch}"
        return super()._get_train_description(current_epoch)

"""Learning curves of a run: validation scores against optimiser steps, wall and CPU time.

`ValidationCurve` (a Lightning callback, conf/experiment/ablation.yaml) writes curve.csv into
the run folder at every validation: one row per validation with

    step, epoch, wall_s, cpu_s, val/psnr, val/<set>/psnr, val/<set>/ssim, ...

and, when training ends, training_time.json: the steps, wall and CPU seconds of the whole run.

wall_s and cpu_s count training only (validation excluded, so that how often a run validates
does not change its clock), from the start of the fit, and continue across a resume. cpu_s is
the CPU time of the training processes (all their threads, summed over DDP processes); loader
worker processes are not counted.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

CURVE_FILE = "curve.csv"
TIME_FILE = "training_time.json"


class ValidationCurve(Callback):
    """Records the validation metrics with the step and training time they were reached at.

    Args:
        dirpath: the folder of curve.csv (the run folder).
        filename: the file's name.
    """

    def __init__(self, dirpath: str | Path, filename: str = CURVE_FILE) -> None:
        self.path = Path(dirpath) / filename
        self.rows: list[dict[str, float]] = []
        self._wall = 0.0  # training seconds before the current stretch
        self._cpu = 0.0
        self._stretch: tuple[float, float] | None = None  # (wall, cpu) at its start
        self._paused = False  # a validation stopped the training clock

    # a resumed run continues its curve and its clocks
    def state_dict(self) -> dict[str, Any]:
        wall, cpu = self._elapsed()
        return {"rows": list(self.rows), "wall_s": wall, "cpu_s": cpu}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
        self._wall = float(state_dict.get("wall_s", 0.0))
        self._cpu = float(state_dict.get("cpu_s", 0.0))

    def _start_stretch(self) -> None:
        self._stretch = (time.perf_counter(), time.process_time())

    def _elapsed(self) -> tuple[float, float]:
        if self._stretch is None:
            return self._wall, self._cpu
        wall, cpu = self._stretch
        return self._wall + time.perf_counter() - wall, self._cpu + time.process_time() - cpu

    def _stop_stretch(self) -> None:
        self._wall, self._cpu = self._elapsed()
        self._stretch = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_stretch()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_stretch()
        cpu = self._all_processes_cpu(trainer, pl_module)
        if trainer.is_global_zero:
            record = {"steps": trainer.global_step, "wall_s": self._wall, "cpu_s": cpu}
            (self.path.parent / TIME_FILE).write_text(json.dumps(record, indent=2))

    def _all_processes_cpu(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        """Every process's CPU seconds, summed: the cost of the run on all its cores."""
        local = torch.tensor(self._cpu, dtype=torch.float64, device=pl_module.device)
        return float(trainer.strategy.reduce(local, reduce_op="sum"))

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._paused = self._stretch is not None  # validation inside training
        if self._paused:
            self._stop_stretch()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            if self._paused:
                self._start_stretch()
            return
        cpu = self._all_processes_cpu(trainer, pl_module)
        row: dict[str, float] = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "wall_s": round(self._wall, 3),
            "cpu_s": round(cpu, 3),
        }
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.startswith("val/") and value.numel() == 1:
                row[key] = float(value)
        self.rows.append(row)
        if trainer.is_global_zero:
            self.write()
        if self._paused:
            self._start_stretch()

    def write(self) -> Path:
        """curve.csv with every row recorded so far (columns: the union, in first-seen order)."""
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        return self.path

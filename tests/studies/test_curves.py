"""ValidationCurve: validation scores with the step and the training time (validation excluded)
they were reached at, continued across a resume."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import torch

from derain.studies import curves
from derain.studies.curves import ValidationCurve


class Clock:
    """perf_counter and process_time under the test's control (CPU runs at half the wall)."""

    def __init__(self):
        self.now = 0.0

    def wall(self):
        return self.now

    def cpu(self):
        return self.now / 2


def _trainer(step, psnr):
    return SimpleNamespace(
        sanity_checking=False,
        global_step=step,
        current_epoch=0,
        is_global_zero=True,
        callback_metrics={"val/psnr": torch.tensor(psnr), "train/loss": torch.tensor(0.1)},
        strategy=SimpleNamespace(reduce=lambda t, reduce_op: t),
    )


def _validate(callback, clock, start, end, step, psnr):
    trainer, module = _trainer(step, psnr), SimpleNamespace(device=torch.device("cpu"))
    clock.now = start
    callback.on_validation_start(trainer, module)
    clock.now = end
    callback.on_validation_end(trainer, module)


def test_the_clock_counts_training_only_and_continues_after_a_resume(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(curves.time, "perf_counter", clock.wall)
    monkeypatch.setattr(curves.time, "process_time", clock.cpu)
    callback = ValidationCurve(tmp_path)
    callback.on_train_start(None, None)  # at 0 s
    _validate(callback, clock, 10.0, 15.0, step=100, psnr=20.0)  # 10 s trained, 5 s validating
    _validate(callback, clock, 25.0, 40.0, step=200, psnr=22.5)  # 10 s more
    clock.now = 42.0
    state = callback.state_dict()  # a checkpoint 2 s after the last validation
    assert (state["wall_s"], state["cpu_s"]) == (22.0, 11.0)

    resumed = ValidationCurve(tmp_path)
    resumed.load_state_dict(state)
    clock.now = 100.0  # the resumed run starts later: the gap is not training
    resumed.on_train_start(None, None)
    _validate(resumed, clock, 108.0, 109.0, step=300, psnr=23.0)
    clock.now = 111.0
    resumed.on_train_end(_trainer(320, 0.0), SimpleNamespace(device=torch.device("cpu")))
    timing = json.loads((tmp_path / "training_time.json").read_text())
    assert timing == {"steps": 320, "wall_s": 32.0, "cpu_s": 16.0}
    with (tmp_path / "curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["wall_s"], r["cpu_s"], r["val/psnr"]) for r in rows] == [
        ("100", "10.0", "5.0", "20.0"),
        ("200", "20.0", "10.0", "22.5"),
        ("300", "30.0", "15.0", "23.0"),
    ]
    assert "train/loss" not in rows[0]  # validation metrics only

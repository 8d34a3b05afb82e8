"""Learning-rate schedules fitted to a run: warm-up and cosine decay by steps and by time."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from derain.training.module import DerainModule
from derain.training.schedules import warmup_cosine
from helpers import TINY_MODEL, tiny_datamodule


def test_warmup_cosine_rises_linearly_then_decays_to_the_floor():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert lrs[-1] == pytest.approx(0.1)


def test_warmup_cosine_following_time_decays_when_either_budget_runs_out():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    clock = {"fraction": 0.0}
    sched = warmup_cosine(
        opt,
        warmup_steps=2,
        total_steps=102,
        min_lr_ratio=0.1,
        elapsed_fraction=lambda: clock["fraction"],
    )
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.01))
    )
    clock["fraction"] = 0.5  # half the time gone after 1% of the steps: time leads
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 + 0.9 * 0.5)
    clock["fraction"] = 1.5  # past the budget: the floor, never below
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_max_time_fraction_reads_the_trainers_time_limit():
    from lightning.pytorch.callbacks import Timer

    from derain.training.schedules import max_time_fraction

    class FakeTrainer:
        def __init__(self, callbacks):
            self.callbacks = callbacks
            self.world_size = 1

    assert max_time_fraction(FakeTrainer([])) is None
    assert max_time_fraction(FakeTrainer([Timer(duration=None)])) is None
    timer = Timer(duration="00:00:01:40")  # 100 s
    timer._offset = 25.0  # as restored from a checkpoint: 25 s already trained
    fraction = max_time_fraction(FakeTrainer([timer]))
    assert fraction() == pytest.approx(0.25)

    class RankZeroSays:
        def broadcast(self, value, src=0):
            assert src == 0
            return 0.75  # rank 0's clock

    several = FakeTrainer([timer])
    several.world_size, several.strategy = 2, RankZeroSays()
    assert max_time_fraction(several)() == pytest.approx(0.75)


def test_under_several_processes_the_time_share_is_broadcast_every_few_steps_only():
    from lightning.pytorch.callbacks import Timer

    from derain.training.schedules import TIME_SHARE_SYNC_EVERY, max_time_fraction

    class CountingBroadcast:
        def __init__(self):
            self.calls = 0

        def broadcast(self, value, src=0):
            self.calls += 1
            return 0.1 * self.calls  # rank 0's clock moves between broadcasts

    class TwoProcesses:
        world_size = 2
        strategy = CountingBroadcast()
        callbacks = [Timer(duration="00:00:01:40")]

    trainer = TwoProcesses()
    fraction = max_time_fraction(trainer)
    shares = [fraction() for _ in range(2 * TIME_SHARE_SYNC_EVERY)]
    # a broadcast waits for every process: two in 2 × TIME_SHARE_SYNC_EVERY steps, the shared
    # value held in between (every process steps its scheduler in lockstep, so all agree)
    assert trainer.strategy.calls == 2
    assert shares == [0.1] * TIME_SHARE_SYNC_EVERY + [0.2] * TIME_SHARE_SYNC_EVERY


class SpendHalfTheTimeLimit(Callback):
    """As if a resumed run had already trained for half of its 100 s limit."""

    def on_train_start(self, trainer, pl_module):
        trainer.callbacks[[type(c).__name__ for c in trainer.callbacks].index("Timer")]._offset = 50


@pytest.mark.parametrize("follow", [False, True])
def test_cosine_schedule_follows_the_trainers_max_time_when_asked(follow):
    scheduler = {
        "_target_": "derain.training.schedules.cosine_schedule",
        "_partial_": True,
        "warmup_steps": 0,
        "total_steps": 1000,
        "min_lr_ratio": 0.0,
        "follow_max_time": follow,
    }
    optimizer = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1.0}
    module = DerainModule(model=TINY_MODEL, optimizer=optimizer, scheduler=scheduler)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        max_time={"seconds": 100},
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[SpendHalfTheTimeLimit()],
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=tiny_datamodule())
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    if follow:  # progress ≥ 0.5 by time: at most the half-way rate
        assert lr <= 0.5 + 1e-6
    else:  # 2 of 1000 steps
        assert lr == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 1000)))


def _fitted_rates(compose_config, overrides: list[str], steps: int) -> tuple[str, list[float]]:
    """(the interval, the learning rates of `steps` scheduler steps) of conf/train.yaml's
    module with `overrides`."""
    from derain.training.tasks import build_module

    cfg = compose_config("train", [*overrides, "model.width=8", "model.depth=1"])
    module = build_module(cfg)
    trainer = pl.Trainer(accelerator="cpu", logger=False, barebones=True)
    module.trainer = trainer
    config = module.configure_optimizers()
    schedule, optimizer = config["lr_scheduler"], config["optimizer"]
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule["scheduler"].step()
    return schedule["interval"], rates


def test_scheduler_group_settings_are_one_level_deep(compose_config):
    interval, rates = _fitted_rates(
        compose_config,
        ["scheduler=cosine", "scheduler.warmup_steps=2", "scheduler.total_steps=6"],
        steps=7,
    )
    assert interval == "step"
    assert rates[:2] == pytest.approx([1e-4, 2e-4])  # warm-up to optimizer.lr = 2e-4
    assert rates[6] == pytest.approx(2e-6)  # the floor, min_lr_ratio = 0.01
    interval, rates = _fitted_rates(
        compose_config, ["scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5"], 3
    )
    assert interval == "epoch"
    assert rates == pytest.approx([2e-4, 1e-4, 5e-5])
    assert not compose_config("train", ["scheduler=none"]).scheduler


def test_the_old_two_level_scheduler_keys_fail_naming_the_key(compose_config):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match=r"scheduler\.scheduler\.warmup_steps"):
        compose_config("train", ["scheduler=cosine", "scheduler.scheduler.warmup_steps=2"])

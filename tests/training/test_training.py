"""Helpers of the train task that need no training run."""

from __future__ import annotations

import pytest
import torch

from derain.training import tasks as training


def test_after_cpu_ddp_the_testing_process_takes_the_other_processes_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(training, "_USER_THREADS", None)
        training._use_idle_cores(world_size=2)
        assert torch.get_num_threads() == 2
        # a user's OMP_NUM_THREADS is left as they set it
        torch.set_num_threads(1)
        monkeypatch.setattr(training, "_USER_THREADS", "1")
        training._use_idle_cores(world_size=2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


LOGGED = {"val/psnr": 31.5, "val/ssim": 0.9, "train/loss": 0.1}


def _run_config(**settings):
    from omegaconf import OmegaConf

    return OmegaConf.create({"optimized_metric": "val/psnr", "train": True, **settings})


def test_the_optimized_metric_is_the_logged_value():
    assert training.optimized_value(_run_config(), LOGGED, sweeping=True) == 31.5


def test_a_sweep_whose_optimized_metric_was_not_logged_fails_listing_the_logged_ones():
    cfg = _run_config(optimized_metric="val/psnrr")
    with pytest.raises(ValueError, match="optimized_metric=val/psnrr was not logged") as error:
        training.optimized_value(cfg, LOGGED, sweeping=True)
    assert "train/loss, val/psnr, val/ssim" in str(error.value)


def test_a_single_run_only_warns_and_a_test_only_run_has_nothing_to_optimise(caplog):
    cfg = _run_config(optimized_metric="val/psnrr")
    assert training.optimized_value(cfg, LOGGED, sweeping=False) is None
    assert "optimized_metric=val/psnrr was not logged" in caplog.text
    test_only = _run_config(optimized_metric="val/psnrr", train=False)
    assert training.optimized_value(test_only, {}, sweeping=True) is None


def test_dropping_derains_progress_bar_turns_bars_off_unless_the_trainer_says_otherwise():
    from lightning.pytorch.callbacks import LearningRateMonitor
    from omegaconf import OmegaConf

    from derain.training.callbacks import ProgressBar

    unset, shown = (
        OmegaConf.create({"max_steps": 3}),
        OmegaConf.create({"enable_progress_bar": True}),
    )
    assert training.progress_bar_setting(unset, [LearningRateMonitor()]) == {
        "enable_progress_bar": False
    }
    assert training.progress_bar_setting(unset, [ProgressBar()]) == {}
    assert training.progress_bar_setting(shown, []) == {}  # asked for: Lightning's own bar


def test_a_run_bounded_by_steps_alone_names_its_epoch_without_a_negative_total():
    import lightning.pytorch as pl

    from derain.training.callbacks import ProgressBar

    for max_epochs, expected in ((-1, "Epoch 3"), (5, "Epoch 3/4")):
        bar = ProgressBar()
        trainer = pl.Trainer(
            accelerator="cpu", max_epochs=max_epochs, max_steps=10, logger=False, callbacks=[bar]
        )
        bar._trainer = trainer  # what Lightning sets when a run starts
        assert bar._get_train_description(3).strip() == expected

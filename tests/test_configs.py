"""The config tree: how its groups compose."""

from __future__ import annotations

from omegaconf import OmegaConf

from derain.paths import config_dir

CALLBACKS = [
    "best_checkpoint",
    "last_checkpoint",
    "timed_checkpoint",
    "preemption",
    "random_states",
    "skipped_samples",
    "ema",
    "lr_monitor",
    "throughput",
    "progress_bar",
]


def test_each_callback_has_its_own_file_and_the_default_composes_them_all(compose_config):
    folder = config_dir() / "callbacks"
    for name in CALLBACKS:
        # one file per callback, holding that callback only, under its own name
        assert list(OmegaConf.load(folder / f"{name}.yaml")) == [name]
    assert list(compose_config("train").callbacks) == CALLBACKS


def test_a_callback_is_dropped_or_changed_by_its_key(compose_config):
    cfg = compose_config("train", ["callbacks.ema=null"])
    assert cfg.callbacks.ema is None
    cfg = compose_config("train", ["callbacks.ema.decay=0.5"])
    assert cfg.callbacks.ema.decay == 0.5
    assert cfg.callbacks.best_checkpoint.monitor == "val/psnr"

"""The `debug` config group: short runs for checking a config, and the optional local file."""

from __future__ import annotations

import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir

from derain.paths import config_dir
from helpers import TINY, run_cli

DEBUG_OPTIONS = {
    "default": {},
    "fdr": {"fast_dev_run": True},
    "overfit": {"overfit_batches": 2, "limit_train_batches": None},
    "anomaly": {"detect_anomaly": True},
    "profiler": {"profiler": "lightning.pytorch.profilers.SimpleProfiler"},
}


def test_every_debug_option_is_tested():
    assert {p.stem for p in (config_dir() / "debug").glob("*.yaml")} == set(DEBUG_OPTIONS)


@pytest.mark.parametrize("option", sorted(DEBUG_OPTIONS))
def test_a_debug_option_shortens_any_experiment_and_keeps_logs_local(compose_config, option):
    plain = compose_config("train", ["experiment=demo"])
    cfg = compose_config("train", ["experiment=demo", f"debug={option}"])
    assert plain.trainer.max_steps == 3000 and plain.trainer.max_time is not None
    # debug comes after the experiment in the defaults list: its limits hold
    assert cfg.trainer.max_epochs >= 1 and cfg.trainer.max_steps == -1
    assert cfg.trainer.max_time is None
    assert cfg.data.num_workers == 0 and cfg.data.batch_size == 2
    assert list(cfg.logger) == ["csv"] and cfg.task_name == "debug"
    # a logger named on the command line still wins
    assert list(compose_config("train", [f"debug={option}", "logger=many"]).logger)[-1] == "wandb"
    for key, value in DEBUG_OPTIONS[option].items():
        found = cfg.trainer[key]
        assert (found._target_ if key == "profiler" else found) == value


def test_fast_dev_run_and_overfit_train_as_lightning_says(tmp_path):
    """One batch of each loop (fdr); the same 2 batches every epoch (overfit), where the 8
    training pairs would otherwise make 4 batches."""
    args = [a for a in TINY if not a.startswith(("data.limit", "trainer.max_steps"))]
    run_cli(
        "derain-train", "-m", *args, "data.limit=8", "trainer.max_epochs=2",
        "debug=fdr,overfit", cwd=tmp_path,
    )  # fmt: skip
    (sweep,) = (tmp_path / "logs" / "debug" / "multiruns").iterdir()
    fdr, overfit = sweep / "0", sweep / "1"

    def steps(run):
        return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]

    assert steps(fdr) == 1
    assert not (fdr / "csv" / "metrics.csv").exists()  # fast_dev_run logs nothing
    assert (fdr / "results.json").is_file()  # and still tests
    assert steps(overfit) == 2 * 2
    assert (overfit / "csv" / "metrics.csv").read_text().count("\n") > 4  # logged every step


def test_an_optional_local_file_applies_this_machines_settings(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    (conf / "local" / "default.yaml").write_text(
        "# @package _global_\ndata:\n  batch_size: 3\ntrainer:\n  accelerator: gpu\n"
    )
    with initialize_config_dir(version_base=None, config_dir=str(conf)):
        cfg = compose("train", ["experiment=demo"])
    assert cfg.data.batch_size == 3 and cfg.trainer.accelerator == "gpu"

"""Loggers: CSV, TensorBoard and W&B (offline) together, and none."""

from __future__ import annotations

import json

from helpers import TINY, run_cli, run_dirs


def test_every_logger_writes_its_files_offline(tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    run_cli(
        "derain-train", *TINY, "logger=many", "logger.wandb.offline=true", cwd=tmp_path, env=env
    )
    (run,) = run_dirs(tmp_path)
    assert (run / "csv" / "metrics.csv").read_text().count("val/psnr") == 1  # header
    assert list((run / "csv" / "panels").glob("*.png"))
    assert list((run / "tensorboard").glob("**/events.out.tfevents.*"))
    (wandb_run,) = (run / "wandb").glob("offline-run-*")
    (records,) = wandb_run.glob("*.wandb")
    assert b"derain.models.ELF" in records.read_bytes()  # the resolved config went along
    media = wandb_run / "files" / "media"
    assert list(media.glob("images/val/panel_*.png"))  # image panels
    assert list(media.glob("table/test/per_image_*.table.json"))  # per-image scores


def test_no_logger_still_writes_results(tmp_path):
    run_cli("derain-train", *TINY, "logger=none", cwd=tmp_path)
    (run,) = run_dirs(tmp_path)
    assert not (run / "csv").exists()
    assert json.loads((run / "results.json").read_text())["sets"]["mean"]["images"] == 2 + 2

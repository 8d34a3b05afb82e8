"""`derain-train` and `derain-eval` from the command line, composing the real configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY, run_cli, run_dirs


def test_train_writes_checkpoints_results_panel_and_throughput(trained_run):
    _, run, stdout = trained_run
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / ".hydra" / "config.yaml").is_file()  # the resolved config is kept
    results = json.loads((run / "results.json").read_text())
    assert set(results["sets"]) == {"synthetic_light", "synthetic_heavy", "mean"}
    light, heavy = results["sets"]["synthetic_light"], results["sets"]["synthetic_heavy"]
    assert light["input_psnr"] > heavy["input_psnr"]  # heavy rain degrades more
    mean = results["sets"]["mean"]
    assert abs(mean["psnr"] - (light["psnr"] + heavy["psnr"]) / 2) < 1e-9
    assert "| synthetic_light |" in (run / "results.md").read_text()
    panel = np.asarray(Image.open(run / "panel.png").convert("RGB")).astype(int)
    # four columns (rainy | restored | clean | rain) of the test sets' 48-px tiles, 4-px gaps
    assert panel.shape[1] == 4 * 48 + 5 * 4
    rainy, clean = panel[18:66, 4:52], panel[18:66, 4 + 2 * 52 : 52 + 2 * 52]
    assert np.abs(rainy - clean).mean() > 1  # real pictures: the rain shows against the clean
    throughput = json.loads((run / "throughput.json").read_text())
    assert throughput["world_size"] == 1 and throughput["global_steps"] == 3
    # data.limit=2 at batch 2: one step, two samples per epoch; the first epoch is not timed
    assert throughput["epochs_timed"] == 2
    samples = throughput["samples_per_s"] * throughput["s_per_epoch"] * throughput["epochs_timed"]
    assert samples == pytest.approx(2 * 2)
    assert str(run / "results.md") in stdout
    # callbacks.progress_bar=null (in TINY) means no bar, not Lightning's own in its place
    assert "Epoch" not in stdout


def test_checkpoint_holds_the_model_config_and_loads_without_code(trained_run):
    _, run, _ = trained_run
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    model = ckpt["hyper_parameters"]["model"]
    assert model["_target_"] == "derain.models.ELF" and model["width"] == 8
    assert any(k.startswith("model.") for k in ckpt["state_dict"])


def test_eval_scores_a_checkpoint_on_every_test_set(trained_run):
    cwd, run, _ = trained_run
    ckpt = run / "checkpoints" / "last.ckpt"
    data = [a for a in TINY if a.startswith(("+data.test", "data.limit"))]
    proc = run_cli("derain-eval", f"ckpt_path={ckpt}", "save_images=true", *data, cwd=cwd)
    (eval_run,) = run_dirs(cwd, "eval")
    results = json.loads((eval_run / "results.json").read_text())
    trained = json.loads((run / "results.json").read_text())
    # the same weights on the same held-out images give the same scores
    for name in ("synthetic_light", "synthetic_heavy"):
        assert abs(results["sets"][name]["psnr"] - trained["sets"][name]["psnr"]) < 1e-6
    saved = sorted((eval_run / "images" / "synthetic_light").glob("*.png"))
    assert len(saved) == results["sets"]["synthetic_light"]["images"]
    assert "synthetic_heavy" in proc.stdout and "mean over sets" in proc.stdout


def test_eval_refuses_a_missing_checkpoint(tmp_path):
    proc = run_cli("derain-eval", f"ckpt_path={tmp_path / 'nope.ckpt'}", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "nope.ckpt" in proc.stderr + proc.stdout


def test_resume_from_last_continues_the_step_count(trained_run, tmp_path):
    cwd, run, _ = trained_run
    ckpt = run / "checkpoints" / "last.ckpt"
    before = ckpt.read_bytes()
    args = [a for a in TINY if not a.startswith("trainer.max_steps")]
    run_cli(
        "derain-train",
        *args,
        "trainer.max_steps=5",
        f"ckpt_path={ckpt}",
        "test=false",
        cwd=tmp_path,
    )
    (resumed,) = run_dirs(tmp_path)
    state = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 5
    assert ckpt.read_bytes() == before  # the earlier run's files are untouched


def test_eval_in_the_other_memory_layout_gives_the_same_scores(trained_run):
    cwd, run, _ = trained_run
    ckpt = run / "checkpoints" / "last.ckpt"
    data = [a for a in TINY if a.startswith(("+data.test", "data.limit"))]
    proc = run_cli("derain-eval", f"ckpt_path={ckpt}", "channels_last=false", *data, cwd=cwd)
    eval_run = next(
        r
        for r in run_dirs(cwd, "eval")
        if "channels_last: false" in (r / ".hydra" / "config.yaml").read_text()
    )
    results = json.loads((eval_run / "results.json").read_text())
    trained = json.loads((run / "results.json").read_text())
    # float rounding may move a pixel's rounded luma by one level, no more
    for name in ("synthetic_light", "synthetic_heavy"):
        assert abs(results["sets"][name]["psnr"] - trained["sets"][name]["psnr"]) < 0.01
    assert "mean over sets" in proc.stdout


def test_eval_scores_in_fp32_whatever_the_trainers_precision_and_says_so(trained_run, tmp_path):
    _, run, _ = trained_run
    trained = json.loads((run / "results.json").read_text())  # tested in fp32 after training
    assert trained["metadata"]["precision"] == "32-true"
    ckpt = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    small = [a for a in TINY if a.startswith(("+data.test", "data.limit"))]
    mixed = "trainer.precision=bf16-mixed"  # what trainer=gpu sets
    for args in ([mixed], [mixed, "precision=bf16-mixed"]):
        run_cli("derain-eval", ckpt, *small, *args, "panel_images=0", cwd=tmp_path)
    runs = run_dirs(tmp_path, task="eval")
    bf16_trainer, bf16_scored = (json.loads((r / "results.json").read_text()) for r in runs)
    assert bf16_trainer["metadata"]["precision"] == "32-true"
    assert bf16_trainer["sets"] == trained["sets"]
    assert "float32 (32-true)" in (runs[0] / "results.md").read_text()
    assert bf16_scored["metadata"]["precision"] == "bf16-mixed"
    assert bf16_scored["sets"]["mean"]["psnr"] != trained["sets"]["mean"]["psnr"]

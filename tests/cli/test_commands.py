"""Every command is a task that Python calls as the command line does (`run(cfg)`, composed
with Hydra's compose API), behind an entry point of a few lines; an earlier setting name stops
the command with the name to write."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from rich.console import Console

import derain.cli
from derain.data.io import read_image
from derain.inference import Restorer, load_model, read_photo, save_safetensors
from derain.models import ELF
from derain.paths import config_dir
from helpers import run_cli

CLI_DIR = Path(derain.cli.__file__).parent
MAX_LINES = 60


def _compose(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(name, overrides=list(overrides))


def _quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.mark.parametrize("module", sorted(p.name for p in CLI_DIR.glob("*.py")))
def test_every_command_line_module_stays_thin(module):
    lines = (CLI_DIR / module).read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"cli/{module} has {len(lines)} lines: move logic to its task"


def test_predict_run_returns_what_it_wrote(tmp_path):
    from derain.inference.predict import run

    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny").eval()
    checkpoint = save_safetensors(model, tmp_path / "tiny.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (33, 41)), ("b.jpg", (40, 24))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(photos / name)
    (photos / "broken.png").write_bytes(b"not a png")
    cfg = _compose(
        "predict",
        f"ckpt_path={checkpoint}",
        f"input={photos}",
        f"output={tmp_path / 'out'}",
        "format=png",
        "device=cpu",
    )
    summary = run(cfg, _quiet())
    assert sorted(p.name for p in summary.done) == ["a.png", "b.jpg"]
    ((failed, reason),) = summary.failed
    assert failed.name == "broken.png" and reason.startswith(f"cannot decode image file {failed}")
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a.png", "b.png"]
    expected = Restorer(load_model(checkpoint), device="cpu")(read_photo(photos / "a.png").pixels)
    np.testing.assert_allclose(read_image(tmp_path / "out" / "a.png"), expected, atol=1 / 255)
    again = run(cfg, _quiet())  # outputs exist: nothing derained twice
    assert (again.done, sorted(p.name for p in again.skipped)) == ([], ["a.png", "b.jpg"])


def test_score_run_returns_the_means_of_the_files_it_wrote(tmp_path):
    from derain.evaluation.scoring import run

    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        clean = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        noisy = np.clip(clean + rng.integers(-9, 10, clean.shape), 0, 255).astype(np.uint8)
        Image.fromarray(clean).save(gt / f"rain-{index}.png")
        Image.fromarray(noisy).save(pred / f"rain-{index}.png")
    cfg = _compose("score", f"pred={pred}", f"gt={gt}", f"output={tmp_path / 'scores'}")
    summary = run(cfg, _quiet())
    assert [p.name for p in summary["written"]] == ["scores.csv", "scores.json"]
    stored = json.loads((tmp_path / "scores" / "scores.json").read_text())
    assert (stored["count"], stored["psnr"], stored["ssim"]) == (
        summary["count"],
        summary["psnr"],
        summary["ssim"],
    )
    with (tmp_path / "scores" / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert summary["count"] == len(rows) == 3
    assert summary["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]), abs=1e-9)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("ckpt=model.ckpt", "ckpt= is now ckpt_path=: write ckpt_path=model.ckpt"),
        ("out=scores", "out= is now output=: write output=scores"),
        ("n=5", "n= is now count=: write count=5"),
        ("eval_precision=bf16-mixed", "eval_precision= is now precision="),
    ],
)
def test_an_earlier_setting_name_stops_the_command_naming_the_new_one(arg, message, capsys):
    with pytest.raises(SystemExit) as stop:
        derain.cli.refuse_renamed("convert", ["output=x.ckpt", arg])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_the_installed_command_refuses_an_earlier_name_before_anything_runs(tmp_path):
    proc = run_cli("derain-synth", f"out={tmp_path / 'set'}", "n=2", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "derain-synth: error: out= is now output=" in proc.stderr
    assert not any(tmp_path.iterdir())

"""The leave-one-rain-family-out table, read from run folders as derain-train writes them."""

from __future__ import annotations

import json

import pytest
import yaml

from derain.studies import families


def _run(folder, holdout, gains, rain_free=()):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"holdout": holdout}))
    sets = {
        name: {"images": 2, "input_psnr": 20.0, "psnr": 20.0 + gain} for name, gain in gains.items()
    }
    sets["rain_free"] = {"images": len(rain_free), "input_psnr": float("inf"), "psnr": 40.0}
    sets["mean"] = {"images": 9, "input_psnr": 20.0, "psnr": 99.0}
    sets["synthetic_light"] = {"images": 1, "input_psnr": 20.0, "psnr": 30.0}
    (folder / "results.json").write_text(json.dumps({"metadata": {}, "sets": sets}))
    rows = ["set,name,psnr,ssim,input_psnr"] + [
        f"rain_free,photo{i},{value},1.0,inf" for i, value in enumerate(rain_free)
    ]
    (folder / "per_image.csv").write_text("\n".join(rows) + "\n")


def test_each_family_is_compared_with_itself_trained_on_and_held_out(tmp_path):
    _run(tmp_path / "0", "none", {"streak": 9.0, "screen": 6.0}, rain_free=[44.0, 38.0, 42.0])
    _run(tmp_path / "1", "streak", {"streak": 3.0, "screen": 6.5})
    _run(tmp_path / "2", "screen", {"streak": 8.5, "screen": 2.0})
    (tmp_path / "3").mkdir()  # a run that did not finish is left out
    runs = families.read_sweep(tmp_path)
    rows = {row["family"]: row for row in families.leave_one_out(runs)}
    assert set(rows) == {"streak", "screen"}  # families only: not mean, demo sets or rain-free
    assert rows["streak"]["trained_on"] == 9.0 and rows["streak"]["held_out"] == 3.0
    assert rows["screen"]["transfer_gap"] == pytest.approx(-4.0)
    (free,) = families.rain_free_rows(runs)
    assert free["holdout"] == "none" and free["median"] == 42.0 and free["worst"] == 38.0
    table = families.markdown(runs)
    assert "| streak | +9.00 | +3.00 | -6.00 |" in table


def test_an_unfinished_run_is_named(tmp_path):
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        families.read_run(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        families.read_sweep(tmp_path)

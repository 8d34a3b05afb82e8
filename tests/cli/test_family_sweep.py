"""experiment=rain_families (leave one rain family out) and experiment=default_model take a
folder of photos as a setting and keep the held-out family out of training and validation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from derain.studies import families
from helpers import TINY, run_cli

SUBSETS = ("CBSD68", "McMaster", "Kodak24")


@pytest.fixture
def photos_dir(tmp_path):
    """A stand-in for the photo sets: a few small photos in each expected subfolder."""
    rng = np.random.default_rng(1)
    root = tmp_path / "photos"
    for subset in SUBSETS:
        (root / subset).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / subset / f"{subset.lower()}{i}.png")
    return root


@pytest.mark.parametrize("experiment", ["rain_families", "default_model"])
def test_the_recipe_needs_a_photo_folder_and_holds_a_family_out(compose_config, experiment):
    cfg = compose_config("train", [f"experiment={experiment}", "photos_dir=/data/photos"])
    train = cfg.data.train
    assert list(train.folders) == ["/data/photos/CBSD68", "/data/photos/McMaster"]
    assert train.holdout == cfg.holdout
    # Kodak24 is never trained on: it is where the rain-free photos are measured
    assert all("Kodak24" not in folder for folder in train.folders)
    assert "Kodak24" in cfg.data.test.rain_free.folders[0]
    assert train.rain.scene_lines > 0 and train.rain.rain_free > 0


def test_a_leave_one_out_sweep_writes_the_table(tmp_path, photos_dir):
    args = [a for a in TINY if "synthetic_" not in a]
    run_cli(
        "derain-train",
        "-m",
        "experiment=rain_families",
        f"photos_dir={photos_dir}",
        "holdout=none,screen",
        "trainer=cpu",
        *args,
        "trainer.max_time=null",
        "run_name=lofo",
        cwd=tmp_path,
    )
    sweep = tmp_path / "logs" / "rain_families" / "multiruns" / "lofo"
    runs = families.read_sweep(sweep)
    assert [run.holdout for run in runs] == [None, "screen"]
    assert set(runs[0].gains) == {"streak", "screen", "veil", "depth"}
    assert len(runs[0].rain_free) == 2  # the two Kodak24 stand-ins
    rows = {row["family"]: row for row in families.leave_one_out(runs)}
    assert rows["screen"]["held_out"] == pytest.approx(runs[1].gains["screen"])
    assert rows["veil"]["held_out"] is None  # no run held veil out
    families.main([str(sweep), "--out", str(tmp_path / "table.md")])
    assert "| screen |" in (tmp_path / "table.md").read_text()

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


def test_the_finetuning_steps_add_painted_bars_and_start_from_given_weights(compose_config):
    base = compose_config("train", ["experiment=default_model", "photos_dir=/p"])
    first = compose_config("train", ["experiment=default_model_finetune", "photos_dir=/p"])
    second = compose_config(
        "train",
        ["experiment=default_model_finetune_frames", "photos_dir=/p", "init_weights=/w/step1"],
    )
    assert first.init_weights == "default" and second.init_weights == "/w/step1"
    assert base.data.train.rain.get("scene_patterns", 0) == 0
    assert 0 < first.data.train.rain.scene_patterns < second.data.train.rain.scene_patterns
    assert first.data.train.rain.get("pattern_backing", 0) == 0
    assert second.data.train.rain.pattern_backing > 0
    for cfg in (first, second):  # the same photos, families and held-out measurements
        assert cfg.data.train.folders == base.data.train.folders
        assert cfg.data.train.presets == base.data.train.presets
        assert cfg.data.test == base.data.test and cfg.model == base.model
        assert cfg.optimizer.lr < base.optimizer.lr
    assert second.optimizer.lr < first.optimizer.lr


def test_the_bundled_models_later_steps_narrow_the_bars_then_widen_the_patches(compose_config):
    names = [
        "default_model_finetune",
        "default_model_finetune_narrow",
        "default_model_finetune_context",
        "default_model_finetune_tile",
    ]
    base = compose_config("train", ["experiment=default_model", "photos_dir=/p"])
    steps = [
        compose_config("train", [f"experiment={name}", "photos_dir=/p", "init_weights=/w"])
        for name in names
    ]
    narrow, context, tile = steps[1:]
    assert (
        narrow.data.train.rain.pattern_bar_max <= 4 and narrow.data.train.rain.pattern_backing > 0
    )
    assert list(narrow.data.train.presets).count("large") > list(base.data.train.presets).count(
        "large"
    )
    assert "depth" in narrow.data.train.presets and narrow.data.train.holdout == "depth"
    # the later steps change the patches and the step size, not the data
    for later in (context, tile):
        assert later.data.train == narrow.data.train and later.data.test == base.data.test
    patches = [cfg.data.patch_size for cfg in steps]
    assert patches == sorted(patches) and patches[-1] == 192 and patches[0] == base.data.patch_size
    # each step trains on no fewer pixels a step than the one before, at a lower rate
    pixels = [cfg.data.batch_size * cfg.data.patch_size**2 for cfg in steps]
    assert pixels == sorted(pixels)
    rates = [cfg.optimizer.lr for cfg in steps]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == len(rates)
    assert all(cfg.init_weights == "/w" and cfg.model == base.model for cfg in steps)


@pytest.mark.parametrize("preset", ["elf_tiny", "elf_mid"])
def test_the_capacity_comparison_gives_each_preset_one_time_budget(compose_config, preset):
    base = compose_config("train", ["experiment=default_model", "photos_dir=/p"])
    cfg = compose_config(
        "train", ["experiment=default_model_capacity", "photos_dir=/p", f"model={preset}"]
    )
    assert cfg.model.width == {"elf_tiny": 24, "elf_mid": 32}[preset]
    assert cfg.trainer.devices == 1 and cfg.data.batch_size == 8  # the default's batch of 8
    assert cfg.trainer.max_time and cfg.scheduler.follow_max_time
    assert cfg.data.train == base.data.train and cfg.data.test == base.data.test


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

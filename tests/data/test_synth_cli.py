"""derain-synth: writes a synthetic data set that find_pairs reads back, rain layer included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from derain.data import SkippedFilesWarning, find_pairs, load_pair, to_uint8
from derain.data.synthetic_set import OutputFolderNotEmptyError, write_synthetic_set

SYNTH = Path(sys.executable).parent / "derain-synth"


def run_synth(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SYNTH), *overrides],
        capture_output=True,
        text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )


def test_cli_writes_pairs_find_pairs_reads_back(tmp_path):
    out = tmp_path / "synth"
    proc = run_synth(f"output={out}", "count=3", "size=48", "layout=rain13k", "seed=5")
    assert proc.returncode == 0, proc.stderr
    pairs = find_pairs(out)
    assert len(pairs) == 3 and all(pair.rain is not None for pair in pairs)
    for pair in pairs:
        rainy, clean, rain = (to_uint8(image).astype(int) for image in load_pair(pair))
        assert rainy.shape == (48, 48, 3)
        assert np.array_equal(rainy, np.minimum(clean + rain, 255))  # exact in 8 bit
    params = json.loads((out / "params.json").read_text())
    assert params["preset"] == "light" and params["seed"] == 5
    assert [image["rainy"] for image in params["images"]] == [
        f"input/{p.rainy.name}" for p in pairs
    ]
    assert not (tmp_path / "outputs").exists() and not (out / ".hydra").exists()


def test_cli_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    refused = run_synth(f"output={tmp_path}", "count=1", "size=32")
    assert refused.returncode != 0
    assert "is not empty" in refused.stderr and "overwrite=true" in refused.stderr
    assert run_synth(f"output={tmp_path}", "count=1", "size=32", "overwrite=true").returncode == 0
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_jorder_layout_with_rainstreak_reads_back(tmp_path):
    write_synthetic_set(tmp_path, "heavy", count=3, size=40, layout="jorder")
    with pytest.warns(SkippedFilesWarning, match="params.json"):
        pairs = find_pairs(tmp_path)
    assert [pair.rainy.name for pair in pairs] == ["rain-001.png", "rain-002.png", "rain-003.png"]
    assert [pair.rain.name for pair in pairs] == [
        "rainstreak-001.png",
        "rainstreak-002.png",
        "rainstreak-003.png",
    ]


def test_same_seed_writes_the_same_files(tmp_path):
    for folder in ("a", "b"):
        write_synthetic_set(tmp_path / folder, "light", count=2, size=32, seed=9)
    for name in ("input/001.png", "rain_layer/002.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_writer_refuses_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(OutputFolderNotEmptyError, match="overwrite=true"):
        write_synthetic_set(tmp_path, count=1, size=16)
    write_synthetic_set(tmp_path, count=1, size=16, overwrite=True)
    assert (tmp_path / "input" / "001.png").is_file()


def test_cli_renders_a_rain_family_on_ones_own_photos(tmp_path):
    from PIL import Image

    photos = tmp_path / "mine" / "holiday"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("beach.jpg", "hill.png"):
        Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(photos / name)
    out = tmp_path / "synth"
    proc = run_synth(
        f"output={out}", "count=4", "size=40", "preset=screen", f"photos={tmp_path / 'mine'}"
    )
    assert proc.returncode == 0, proc.stderr
    params = json.loads((out / "params.json").read_text())
    used = [Path(image["photo"]).name for image in params["images"]]
    assert used == ["beach.jpg", "hill.png", "beach.jpg", "hill.png"]
    assert params["config"]["blend"] == "screen" and params["photos"] == str(tmp_path / "mine")
    missing = run_synth(f"output={tmp_path / 'other'}", f"photos={tmp_path / 'nowhere'}")
    assert missing.returncode != 0 and "nowhere does not exist" in missing.stderr

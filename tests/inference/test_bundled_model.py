"""The model that ships inside the package: it installs with the package, loads with no
arguments, gives the same output every time, reproduces its card's held-out scores, and the
commands use it when no checkpoint is given."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import derain
from derain.data import SyntheticRain, load_photo, read_image, write_image
from derain.evaluation import heldout
from derain.inference import DEFAULT_MODEL, bundled_models
from helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "bundled_default_output.png"
"""The bundled model's output on `_fixed_image()`, written when the weights were packaged."""

pytestmark = pytest.mark.skipif(
    DEFAULT_MODEL not in bundled_models(), reason="this checkout bundles no default model"
)


def _fixed_image() -> np.ndarray:
    """A held-out photo crop with light rain (8-bit exact)."""
    clean = load_photo("chelsea")[60:156, 150:246]
    return SyntheticRain("light", seed=7)(clean, 0, quantize=True).rainy


def _card() -> dict:
    text = (bundled_models()[DEFAULT_MODEL] / "README.md").read_text(encoding="utf-8")
    front_matter = text.split("---\n")[1]
    return yaml.safe_load(front_matter)


@pytest.fixture(scope="module")
def restorer():
    return derain.load()


def test_the_bundled_model_is_small_and_has_a_card():
    folder = bundled_models()[DEFAULT_MODEL]
    assert (folder / "model.safetensors").stat().st_size <= 10 * 2**20
    card = _card()
    assert card["library_name"] == "derain"
    assert set(card["derain"]["subset_scores"]) >= {"rain-free (PNG)", "demo light", "demo heavy"}
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["_target_"] == "derain.models.ELF"
    # the card states the one-pass limit the weights carry, and loading applies it
    assert card["derain"]["max_tile"] == config["max_tile"] == derain.load().max_tile


def test_the_same_output_every_time_and_as_when_packaged(restorer):
    image = _fixed_image()
    first, second = restorer(image), derain.load()(image)
    assert np.array_equal(first, second)
    reference = read_image(REFERENCE)
    # 8-bit levels; another CPU may round a rare pixel the other way
    difference = np.abs(np.round(first * 255) - np.round(reference * 255))
    assert difference.max() <= 1 and difference.mean() < 0.01


def test_the_cards_held_out_scores_are_reproduced(restorer):
    scores = heldout.score(restorer, "subset")
    for case, value in _card()["derain"]["subset_scores"].items():
        assert scores[case]["value"] == pytest.approx(value, abs=0.05), case


def test_the_bundled_model_installs_with_the_package_and_loads_from_there(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("derain-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    np.save(tmp_path / "image.npy", _fixed_image())
    script = (
        "import sys, numpy as np, derain\n"
        "from derain.inference import resolve_model\n"
        "print(derain.__file__); print(resolve_model())\n"
        "np.save(sys.argv[1], derain.load()(np.load(sys.argv[2])))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "out.npy"), str(tmp_path / "image.npy")],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    package, weights = proc.stdout.split()[:2]
    assert Path(package).is_relative_to(site) and Path(weights).is_relative_to(site)
    expected = derain.load()(_fixed_image())
    # another thread count sums in another order: float32 round-off only
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)


def test_predict_without_a_checkpoint_derains_a_folder(tmp_path):
    photos = tmp_path / "photos"
    clean = load_photo("coffee")[100:228, 200:360]
    sample = SyntheticRain("light", seed=3)(clean, 0, quantize=True)
    write_image(photos / "rainy.png", sample.rainy)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(photos / "black.jpg")
    run_cli("derain-predict", f"input={photos}", f"output={tmp_path / 'out'}", cwd=tmp_path)
    derained = read_image(tmp_path / "out" / "rainy.png")

    def error(image):
        return float(np.mean((image - sample.clean) ** 2))

    assert error(derained) < 0.5 * error(sample.rainy)
    assert (tmp_path / "out" / "black.jpg").is_file()  # in its own format


def test_eval_without_a_checkpoint_scores_the_bundled_model(tmp_path):
    run_cli("derain-eval", "data.limit=1", f"paths.root_dir={tmp_path}", cwd=tmp_path)
    results = json.loads(
        next((tmp_path / "logs" / "eval" / "runs").glob("*/results.json")).read_text()
    )
    assert results["metadata"]["title"] == f"eval: {DEFAULT_MODEL}"

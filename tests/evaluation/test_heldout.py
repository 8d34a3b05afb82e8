"""Held-out scores as distributions: rain-free photos by their median and worst, rain by its
gain, rain families marked held out or trained on, and folder photos added to the test photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from derain.evaluation import heldout

INF = float("inf")


def test_a_rain_free_case_needs_its_median_and_its_worst_photo():
    good = heldout.summarise("rain-free (PNG)", [(INF, 45.0), (INF, 43.0), (INF, 44.0)])
    assert good["measure"] == "psnr" and good["value"] == 44.0 and good["met"] is True
    assert good["worst"] == 43.0 and good["below_40"] == 0.0
    # a high median does not hide one damaged photo
    one_bad = heldout.summarise("rain-free (PNG)", [(INF, 45.0), (INF, 44.0), (INF, 30.0)])
    assert one_bad["value"] == 44.0 and one_bad["worst"] == 30.0 and one_bad["met"] is False
    assert one_bad["below_40"] == pytest.approx(1 / 3)


def test_a_rain_case_scores_the_mean_gain_and_shows_the_worst():
    row = heldout.summarise("light rain, JPEG q80", [(20.0, 27.0), (30.0, 31.0)])
    assert row["measure"] == "gain" and row["value"] == 4.0 and row["met"] is True
    assert row["worst"] == 1.0 and row["input_psnr"] == 25.0


def test_only_held_out_families_have_a_target():
    held = heldout.summarise(heldout.family_case("screen", True), [(20.0, 23.0)])
    trained = heldout.summarise(heldout.family_case("veil", False), [(20.0, 23.0)])
    assert held["target"] == 4.0 and held["met"] is False
    assert trained["target"] is None and trained["met"] is None
    table = heldout.table({"rain family screen (held out)": held, "rain family veil": trained})
    assert "| rain family veil | 1 |" in table and "| no |" in table


def test_cases_add_folder_photos_and_the_families_asked_for(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("p1.png", "p2.png"):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    counts: dict[str, int] = {}
    for case, rainy, clean in heldout.cases("quick", paths, ["screen", "streak"], ["screen"]):
        counts[case] = counts.get(case, 0) + 1
        assert rainy.shape == clean.shape
    assert counts["rain-free (PNG)"] == 4  # two test photos and two folder photos
    assert counts["rain family screen (held out)"] == 4
    assert counts["rain family streak"] == 4 * 3  # its three presets
    subset = {case for case, _, _ in heldout.cases("subset", paths, ["screen"], ["screen"])}
    assert not any(case.startswith("rain family") for case in subset)


def test_score_runs_the_model_on_every_case_and_an_identity_model_gains_nothing():
    results = heldout.score(lambda image: image, "subset")
    assert results["rain-free (PNG)"]["value"] == INF  # returned unchanged
    assert results["light rain, JPEG q80"]["value"] == 0.0

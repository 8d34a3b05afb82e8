"""`derain-score` replaces the papers' MATLAB script: folders paired by name, protocol scores."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from rich.console import Console
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from derain.data.io import read_image
from derain.evaluation.metrics import psnr, ssim
from derain.evaluation.scoring import run
from derain.paths import config_dir

SCORE = Path(sys.executable).parent / "derain-score"


def _jpeg(photo: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def _noisy(photo: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, sigma, photo.shape)
    return np.clip(np.round(photo + noise), 0, 255).astype(np.uint8)


def _brighter(photo: np.ndarray, offset: int) -> np.ndarray:
    return np.clip(photo.astype(int) + offset, 0, 255).astype(np.uint8)


def write_folders(root: Path) -> tuple[Path, Path]:
    """gt/ holds three photos as PNG; pred/ their degraded versions, one saved as .jpg.

    The pred files are written in another order than the gt files and the three photos differ in
    size and in how badly they are degraded, so a pairing by position would show.
    """
    gt, pred = root / "gt", root / "pred"
    gt.mkdir()
    pred.mkdir()
    # crops keep the tests fast; real photographs keep the scores realistic
    photos = {
        "rain-1": data.astronaut()[:256, 128:384],
        "rain-2": data.chelsea()[:200, 100:340],
        "rain-10": data.coffee()[100:320, 150:450],
    }
    for name, photo in photos.items():
        Image.fromarray(photo).save(gt / f"{name}.png")
    Image.fromarray(_brighter(photos["rain-10"], 12)).save(pred / "rain-10.png")
    Image.fromarray(_noisy(photos["rain-2"], 6.0)).save(pred / "rain-2.png")
    Image.fromarray(_jpeg(photos["rain-1"], 20)).save(pred / "rain-1.jpg")
    return pred, gt


def expected_scores(pred: Path, gt: Path) -> dict[str, tuple[float, float]]:
    """name → (PSNR, SSIM) from derain.evaluation.metrics on each same-named pair, read by derain.data.io."""
    scores = {}
    for gt_path in gt.iterdir():
        pred_path = next(pred.glob(f"{gt_path.stem}.*"))
        a, b = (
            torch.from_numpy(read_image(path)).permute(2, 0, 1)[None]
            for path in (pred_path, gt_path)
        )
        scores[gt_path.stem] = (psnr(a, b).item(), ssim(a, b).item())
    return scores


def skimage_scores(pred_path: Path, gt_path: Path) -> tuple[float, float]:
    """The MATLAB computation with numpy + scikit-image: rounded studio-range Y of 8-bit files."""

    def luma(path):
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
        y = 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
        return np.floor(y + 0.5)

    y_pred, y_gt = luma(pred_path), luma(gt_path)
    return (
        peak_signal_noise_ratio(y_gt, y_pred, data_range=255),
        structural_similarity(
            y_pred,
            y_gt,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        ),
    )


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """One real `derain-score pred=pred gt=gt output=out` run in a fresh working directory."""
    root = tmp_path_factory.mktemp("score")
    pred, gt = write_folders(root)
    result = subprocess.run(
        [str(SCORE), "pred=pred", "gt=gt", "output=out"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((root / "out" / "scores.json").read_text())
    with (root / "out" / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "root": root,
        "stdout": result.stdout,
        "summary": summary,
        "rows": rows,
        "expected": expected_scores(pred, gt),
    }


def test_prints_the_mean_scores_and_count(scored):
    expected = scored["expected"].values()
    mean_psnr = np.mean([p for p, _ in expected])
    mean_ssim = np.mean([s for _, s in expected])
    assert f"{mean_psnr:.4f}" in scored["stdout"]
    assert f"{mean_ssim:.4f}" in scored["stdout"]
    assert re.search(r"│\s+3\s+│", scored["stdout"]), "the image count is printed"


def test_json_holds_the_means_of_the_per_image_scores(scored):
    summary, expected = scored["summary"], scored["expected"]
    assert summary["count"] == 3
    assert (summary["channel"], summary["rounded_y"]) == ("y", True)
    assert summary["psnr"] == pytest.approx(np.mean([p for p, _ in expected.values()]), abs=1e-9)
    assert summary["ssim"] == pytest.approx(np.mean([s for _, s in expected.values()]), abs=1e-9)


def test_each_result_is_scored_against_the_ground_truth_of_its_name(scored):
    images = {row["name"]: row for row in scored["summary"]["images"]}
    assert set(images) == {"rain-1", "rain-2", "rain-10"}
    assert Path(images["rain-1"]["pred"]).name == "rain-1.jpg"
    assert Path(images["rain-1"]["gt"]).name == "rain-1.png"
    for name, (expected_psnr, expected_ssim) in scored["expected"].items():
        assert images[name]["psnr"] == pytest.approx(expected_psnr, abs=1e-9)
        assert images[name]["ssim"] == pytest.approx(expected_ssim, abs=1e-9)


def test_per_image_scores_agree_with_scikit_image(scored):
    for row in scored["summary"]["images"]:
        root = scored["root"]
        expected_psnr, expected_ssim = skimage_scores(root / row["pred"], root / row["gt"])
        assert row["psnr"] == pytest.approx(expected_psnr, abs=1e-3)
        assert row["ssim"] == pytest.approx(expected_ssim, abs=1e-4)


def test_csv_rows_match_the_json(scored):
    from_json = {row["name"]: row for row in scored["summary"]["images"]}
    assert len(scored["rows"]) == 3
    for row in scored["rows"]:
        assert float(row["psnr"]) == pytest.approx(from_json[row["name"]]["psnr"], abs=1e-12)
        assert float(row["ssim"]) == pytest.approx(from_json[row["name"]]["ssim"], abs=1e-12)


def test_writes_nothing_but_the_reports(scored):
    # no Hydra outputs/ run folder or .hydra/ next to the user's data
    assert sorted(p.name for p in scored["root"].iterdir()) == ["gt", "out", "pred"]


def test_unmatched_names_fail_and_name_the_file(tmp_path):
    pred, _ = write_folders(tmp_path)
    # sorts first, so a pairing by position would shift every pair by one without complaint
    Image.fromarray(data.astronaut()[:256, 128:384]).save(pred / "rain-0.png")
    result = subprocess.run(
        [str(SCORE), f"pred={pred}", f"gt={tmp_path / 'gt'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "rain-0.png" in result.stderr
    assert "Traceback" not in result.stderr


def score_config(pred: Path, gt: Path, *overrides: str):
    """conf/score.yaml composed with the given folders and overrides."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose("score", overrides=[f"pred={pred}", f"gt={gt}", *overrides])


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_missing_folder_is_named(tmp_path):
    pred, gt = write_folders(tmp_path)
    with pytest.raises(FileNotFoundError, match="gt=.*missing: no such folder"):
        run(score_config(pred, tmp_path / "missing"), console=quiet())


def test_folder_without_images_is_named(tmp_path):
    pred, _ = write_folders(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="gt=.*empty contains no image files"):
        run(score_config(pred, empty), console=quiet())


def test_size_mismatch_names_both_files(tmp_path):
    pred, gt = write_folders(tmp_path)
    Image.fromarray(data.chelsea()[:198, 100:340]).save(pred / "rain-2.png")
    with pytest.raises(ValueError, match=r"rain-2\.png is 198×240 but .*rain-2\.png is 200×240"):
        run(score_config(pred, gt), console=quiet())


def test_two_images_with_one_name_are_rejected(tmp_path):
    pred, gt = write_folders(tmp_path)
    Image.fromarray(data.astronaut()[:256, 128:384]).save(pred / "rain-1.png")
    with pytest.raises(ValueError, match="two images named 'rain-1'"):
        run(score_config(pred, gt), console=quiet())


def test_rgb_channel_option(tmp_path):
    pred, gt = write_folders(tmp_path)
    summary = run(score_config(pred, gt, "channel=rgb"), console=quiet())
    expected = []
    for row in summary["images"]:
        a, b = (
            torch.from_numpy(read_image(row[key])).permute(2, 0, 1)[None] for key in ("pred", "gt")
        )
        expected.append(psnr(a, b, channel="rgb").item())
    assert summary["channel"] == "rgb"
    assert summary["psnr"] == pytest.approx(np.mean(expected), abs=1e-9)

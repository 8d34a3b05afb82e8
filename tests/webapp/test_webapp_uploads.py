"""The web app's work without a server or browser: checking uploads, deraining them, the
temporary folder, the model choice and the example photos."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from photos import write_bad_files, write_rainy_photo, y_psnr
from PIL import Image

import derain
from derain.data.io import read_image
from derain.inference import Restorer
from derain.webapp.examples import EXAMPLES, write_examples
from derain.webapp.uploads import (
    PREVIEW_SIDE,
    UploadError,
    check_upload,
    derain_photos,
    derain_upload,
)
from derain.webapp.workspace import RESULT_LIFETIME_S, Workspace
from inference.elf_checkpoints import tiny_elf

LIMIT = 16_000_000


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return write_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def rainy(tmp_path_factory) -> tuple[Path, np.ndarray]:
    return write_rainy_photo(tmp_path_factory.mktemp("rainy"))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A 100×120 photo: quick to derain many times."""
    path = tmp_path_factory.mktemp("small") / "small.png"
    pixels = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    return Restorer(tiny_elf(), device="cpu")


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "app")


def test_a_file_without_an_image_suffix_is_refused_with_the_formats_that_work(bad):
    with pytest.raises(UploadError, match=r"notes\.txt is not an image file: .*png"):
        check_upload(bad["notes.txt"], LIMIT)


def test_text_named_like_an_image_is_refused_as_unreadable(bad):
    with pytest.raises(UploadError, match=r"notes\.png cannot be read as an image"):
        check_upload(bad["notes.png"], LIMIT)


def test_the_error_names_the_file_as_the_person_called_it(bad):
    with pytest.raises(UploadError, match=r"^holiday\.png cannot be read"):
        check_upload(bad["notes.png"], LIMIT, name="holiday.png")


def test_a_photo_over_the_pixel_limit_says_its_size_and_how_to_raise_the_limit(rainy):
    path, clean = rainy
    height, width = clean.shape[:2]
    with pytest.raises(UploadError) as caught:
        check_upload(path, height * width - 1)
    message = str(caught.value)
    assert f"{width}×{height}" in message
    assert f"derain-demo max_pixels={height * width}" in message


def test_a_photo_at_the_pixel_limit_passes_with_its_size(rainy):
    path, clean = rainy
    height, width = clean.shape[:2]
    assert check_upload(path, height * width) == (height, width)


def test_a_cut_off_file_whose_header_is_intact_is_refused_as_damaged(bad, restorer, tmp_path):
    check_upload(bad["cut.png"], LIMIT)  # the header alone looks fine
    with pytest.raises(UploadError, match=r"cut\.png cannot be read as an image: .*damaged"):
        derain_upload(restorer, bad["cut.png"], tmp_path, LIMIT)
    assert not any(tmp_path.iterdir())


def test_a_photo_too_large_for_the_memory_budget_says_to_choose_a_larger_one(rainy, restorer):
    small = restorer.with_options(max_memory="1MB")
    with pytest.raises(UploadError, match=r"rainy_cat\.png does not fit .* choose a larger"):
        derain_upload(small, rainy[0], rainy[0].parent / "out", LIMIT)


def test_the_result_keeps_the_size_and_the_format_of_the_upload(rainy, restorer, tmp_path):
    path, clean = rainy
    jpeg = tmp_path / "cat.JPG"
    Image.open(path).save(jpeg, quality=90)
    result = derain_upload(restorer, jpeg, tmp_path / "out", LIMIT)
    assert result.output == tmp_path / "out" / "cat_derained.jpg"
    with Image.open(result.output) as saved:
        assert saved.format == "JPEG" and saved.size == (clean.shape[1], clean.shape[0])
    assert (result.height, result.width, result.tiles) == (*clean.shape[:2], 1)


def test_previews_are_at_most_the_preview_side_and_keep_the_aspect(restorer, tmp_path):
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((64, 1280, 3), 128, np.uint8)).save(wide)
    result = derain_upload(restorer, wide, tmp_path / "out", LIMIT)
    for preview in (result.before, result.after, result.rain):
        assert preview.shape == (51, PREVIEW_SIDE, 3) and preview.dtype == np.uint8
    assert read_image(result.output).shape == (64, 1280, 3)


def test_a_briefly_trained_model_brings_a_rainy_photo_closer_to_the_clean_one(
    briefly_trained_checkpoint, rainy, tmp_path
):
    path, clean = rainy
    result = derain_upload(
        derain.load(briefly_trained_checkpoint, device="cpu"), path, tmp_path, LIMIT
    )
    assert y_psnr(read_image(result.output), clean) > y_psnr(read_image(path), clean) + 1.0


def test_a_bad_file_among_good_ones_is_reported_and_the_rest_derained(
    bad, rainy, restorer, workspace
):
    results, errors = derain_photos(
        restorer, workspace, LIMIT, [str(bad["notes.png"]), str(rainy[0])], "off", "2GB"
    )
    assert [result["name"] for result in results] == ["rainy_cat.png"]
    assert len(errors) == 1 and errors[0].startswith("notes.png cannot be read")
    for key in ("output", "before", "after", "rain"):
        assert Path(results[0][key]).is_file()
        assert workspace.results in Path(results[0][key]).parents


def test_progress_counts_the_tiles_of_each_photo(small, workspace):
    tiled = Restorer(tiny_elf(), device="cpu", tile=64, overlap=16)
    reports = []
    derain_photos(
        tiled,
        workspace,
        LIMIT,
        [str(small)] * 2,
        "off",
        "2GB",
        progress=lambda fraction, text: reports.append((fraction, text)),
    )
    tiles = tiled.plan(100, 120).tiles
    assert tiles > 1
    assert reports[0] == (0.0, f"small.png (1/2): 0/{tiles} tiles")
    assert reports[-1] == (1.0, f"small.png (2/2): {tiles}/{tiles} tiles")
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and len(reports) == 2 * (tiles + 1)


def test_the_page_settings_choose_the_ensemble_and_the_budget(small, workspace, restorer):
    passes = []
    derain_photos(
        restorer,
        workspace,
        LIMIT,
        [str(small)],
        "flips",
        "512MB",
        progress=lambda fraction, text: passes.append(text),
    )
    assert passes[-1].endswith("4/4 passes")
    assert restorer.ensemble is None  # the shared restorer keeps its own settings


def test_each_request_writes_into_a_fresh_folder_and_old_ones_are_deleted(workspace):
    old = workspace.new_request()
    hour_ago = time.time() - RESULT_LIFETIME_S - 1
    os.utime(old, (hour_ago, hour_ago))
    recent = workspace.new_request()
    newest = workspace.new_request()
    assert not old.exists() and recent.is_dir() and newest.is_dir() and recent != newest


def test_closing_the_workspace_removes_everything_in_it(workspace):
    (workspace.new_request() / "result.png").write_bytes(b"x")
    workspace.close()
    assert not workspace.root.exists()


def test_gradio_is_kept_in_the_workspace_and_offline(workspace):
    environment = workspace.environment()
    assert environment["GRADIO_TEMP_DIR"] == str(workspace.uploads)
    assert workspace.root in Path(environment["MPLCONFIGDIR"]).parents
    assert environment["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert environment["HF_HUB_OFFLINE"] == "1"


def test_examples_are_rainy_versions_of_their_photos_and_the_same_every_time(tmp_path):
    first = write_examples(tmp_path / "a")
    second = write_examples(tmp_path / "b")
    assert [path.read_bytes() for path in first] == [path.read_bytes() for path in second]
    for path, example in zip(first, EXAMPLES, strict=True):
        clean = example.render().clean
        assert read_image(path).shape == clean.shape
        assert y_psnr(read_image(path), clean) < 35

"""Which files a prediction run reads and writes, and that it can never damage its inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from derain.data.io import read_image, write_image
from derain.folders.predict import find_images, plan_jobs, write_image_atomically


@pytest.fixture
def photos(tmp_path) -> Path:
    """photos/{a.png, b.jpg, notes.txt, .hidden.png, trip/c.png, trip/day2/d.jpg}"""
    root = tmp_path / "photos"
    pixels = np.full((8, 8, 3), 0.5, np.float32)
    for name in ("a.png", "b.jpg", "trip/c.png", "trip/day2/d.jpg"):
        write_image(root / name, pixels)
    (root / "notes.txt").write_text("not an image")
    write_image(root / ".hidden.png", pixels)
    return root


def _relative(found) -> list[str]:
    return [relative.as_posix() for _, relative in found]


def test_a_folder_gives_its_visible_images(photos):
    assert _relative(find_images(photos)) == ["a.png", "b.jpg"]


def test_a_recursive_folder_gives_sub_folder_images_relative_to_it(photos):
    assert _relative(find_images(photos, recursive=True)) == [
        "a.png",
        "b.jpg",
        "trip/c.png",
        "trip/day2/d.jpg",
    ]


def test_a_glob_gives_matches_relative_to_the_part_before_the_wildcard(photos):
    assert _relative(find_images(f"{photos}/**/*.png")) == ["a.png", "trip/c.png"]
    assert _relative(find_images(f"{photos}/trip/*/*.jpg")) == ["day2/d.jpg"]


def test_a_file_gives_itself(photos):
    assert find_images(photos / "b.jpg") == [(photos / "b.jpg", Path("b.jpg"))]


def test_earlier_results_inside_the_input_folder_are_not_inputs(photos):
    write_image(photos / "derained" / "a.png", np.zeros((8, 8, 3), np.float32))
    found = find_images(photos, recursive=True, exclude=photos / "derained")
    assert "derained/a.png" not in _relative(found)


def test_nothing_found_names_the_input_and_the_fix(tmp_path, photos):
    with pytest.raises(FileNotFoundError, match="input=.*nowhere"):
        find_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files.*recursive=true"):
        find_images(tmp_path / "empty")


def test_outputs_mirror_sub_folders_and_keep_the_stem(photos, tmp_path):
    jobs = plan_jobs(find_images(photos, recursive=True), tmp_path / "out", "png", save_rain=True)
    job = jobs[-1]
    assert job.output == tmp_path / "out" / "trip" / "day2" / "d.png"
    assert job.rain == tmp_path / "out" / "trip" / "day2" / "d_rain.png"


def test_the_input_folder_is_refused_as_output(photos):
    with pytest.raises(ValueError, match="is the input folder"):
        plan_jobs(find_images(photos), photos)
    with pytest.raises(ValueError, match="is the input folder"):
        plan_jobs(find_images(photos / "a.png"), photos, "jpg")


def test_an_output_that_would_replace_an_input_is_refused(photos):
    write_image(photos / "trip" / "a.png", np.zeros((8, 8, 3), np.float32))
    # the glob's root is photos/, so a.png's result would go to photos/trip/a.png, an input
    with pytest.raises(ValueError, match="would overwrite input files: .*trip/a.png"):
        plan_jobs(find_images(f"{photos}/**/*.png"), photos / "trip", "png")


def test_two_inputs_with_one_stem_are_refused(photos, tmp_path):
    write_image(photos / "a.jpg", np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="a.jpg and .*a.png → .*a.png"):
        plan_jobs(find_images(photos), tmp_path / "out")


def test_an_unknown_format_lists_the_image_formats(photos, tmp_path):
    with pytest.raises(ValueError, match="format=gif is not an image format.*png"):
        plan_jobs(find_images(photos), tmp_path / "out", "gif")


def test_an_atomic_write_leaves_only_the_final_file(tmp_path):
    pixels = np.random.default_rng(0).random((6, 7, 3), dtype=np.float32)
    write_image_atomically(tmp_path / "x" / "out.png", pixels)
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["out.png"]
    np.testing.assert_allclose(read_image(tmp_path / "x" / "out.png"), pixels, atol=0.5 / 255)


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    with pytest.raises(ValueError):
        write_image_atomically(tmp_path / "out.png", np.zeros((6, 7, 5), np.float32))
    assert list(tmp_path.iterdir()) == []

"""Which files a prediction run reads and writes, and that it can never damage its inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from derain.data.io import write_image
from derain.inference.files import check_writable, find_images, plan_jobs, scan_images


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


def test_inputs_that_differ_only_in_extension_both_get_outputs_that_keep_it(photos, tmp_path):
    write_image(photos / "a.jpg", np.zeros((8, 8, 3), np.float32))
    jobs = plan_jobs(find_images(photos), tmp_path / "out", "png", save_rain=True)
    named = {job.source.name: (job.output.name, job.rain.name, job.renamed) for job in jobs}
    assert named == {
        "a.jpg": ("a.jpg.png", "a.jpg_rain.png", True),
        "a.png": ("a.png.png", "a.png_rain.png", True),
        "b.jpg": ("b.png", "b_rain.png", False),
    }


def test_a_kept_name_that_is_taken_too_is_numbered(photos, tmp_path):
    for name in ("a.jpg", "a.png.png"):  # a.png.png's own output is a.png.png, as is a.png's
        write_image(photos / name, np.zeros((8, 8, 3), np.float32))
    outputs = [job.output.name for job in plan_jobs(find_images(photos), tmp_path / "o", "png")]
    assert len(set(outputs)) == len(outputs) == 4
    assert "a.png-2.png" in outputs


def test_by_default_each_output_keeps_its_inputs_format(photos, tmp_path):
    write_image(photos / "a.tiff", np.zeros((8, 8, 3), np.float32))
    outputs = sorted(job.output.name for job in plan_jobs(find_images(photos), tmp_path / "out"))
    assert outputs == ["a.png", "a.tiff", "b.jpg"]


def test_an_unknown_format_lists_the_image_formats(photos, tmp_path):
    with pytest.raises(ValueError, match="format=gif is not an image format: use same .*png"):
        plan_jobs(find_images(photos), tmp_path / "out", "gif")


def test_images_left_in_sub_folders_are_counted_with_how_to_take_them(photos):
    found = scan_images(photos)
    assert (len(found.images), found.in_sub_folders) == (2, 2)
    (note,) = found.notes(str(photos), None)
    assert "left out 2 image(s) in sub-folders" in note and "recursive=true" in note
    assert scan_images(photos, recursive=True).notes(str(photos), None) == []


def test_photos_kept_in_an_output_folder_inside_the_input_are_left_out_and_said_so(photos):
    write_image(photos / "derained" / "kept.png", np.zeros((8, 8, 3), np.float32))
    found = scan_images(photos, recursive=True, exclude=photos / "derained")
    assert "derained/kept.png" not in _relative(found.images)
    assert found.in_output == 1
    (note,) = found.notes(str(photos), photos / "derained")
    assert "left out 1 image(s) under" in note and "the output folder" in note


def test_an_output_folder_that_cannot_be_written_is_refused_naming_it(photos):
    with pytest.raises(ValueError, match=r"output=.*a\.png/derained cannot be written"):
        check_writable(photos / "a.png" / "derained")  # a folder below a file


def test_the_write_check_leaves_the_created_output_folder_empty(tmp_path):
    check_writable(tmp_path / "new" / "out")
    assert list((tmp_path / "new" / "out").iterdir()) == []

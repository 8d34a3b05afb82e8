"""find_pairs: every layout of docs/datasets.md, paired by name and checked by content."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from derain.data import (
    LAYOUTS,
    DatasetLayoutError,
    DatasetNotFoundError,
    ImageReadError,
    SkippedFilesWarning,
    detect_layout,
    find_pairs,
    load_pair,
)

# Each builder writes one release's layout under `root`, with junk, upper-case suffixes and
# .jpg/.png mixes, and returns the example indices the sorted pairs must show.


def build_rain13k(root: Path, files, junk) -> list[int]:
    for name, index, rainy_suffix, clean_suffix in [
        ("1", 3, ".jpg", ".png"),
        ("2", 0, ".PNG", ".png"),
        ("10", 5, ".png", ".JPG"),
    ]:
        files.write(root / "input" / f"{name}{rainy_suffix}", index, "rainy")
        files.write(root / "target" / f"{name}{clean_suffix}", index, "clean")
    junk(root / "input", ("Thumbs.db",))
    junk(root / "target", (".DS_Store", "README.txt"))
    return [3, 0, 5]  # natural order: 1, 2, 10


def build_rain13k_release(root: Path, files, junk) -> list[int]:
    train = root / "train" / "Rain13K"
    for name, index in [("a", 2), ("b", 7)]:
        files.write(train / "input" / f"{name}.jpg", index, "rainy")
        files.write(train / "target" / f"{name}.jpg", index, "clean")
    # the test sets of the release lie beside and are not training pairs
    files.write(root / "test" / "Rain100L" / "input" / "1.png", 9, "rainy")
    files.write(root / "test" / "Rain100L" / "target" / "1.png", 9, "clean")
    junk(root)
    return [2, 7]


def build_jorder(root: Path, files, junk) -> list[int]:
    for number, index in [("001", 4), ("002", 1), ("010", 8)]:
        files.write(root / "rainy" / f"rain-{number}.png", index, "rainy")
        files.write(root / f"norain-{number}.png", index, "clean")
    junk(root)
    return [4, 1, 8]


def build_raintrain(root: Path, files, junk) -> list[int]:
    for number, index in [(12, 6), (3, 2), (100, 11)]:
        files.write(root / f"rain-{number}.png", index, "rainy")
        files.write(root / f"norain-{number}.png", index, "clean")
        files.write(root / f"rainstreak-{number}.png", index, "rain")
    junk(root)
    return [2, 6, 11]  # 3, 12, 100


def build_rain200(root: Path, files, junk) -> list[int]:
    for number, index in [(12, 0), (2, 9)]:
        files.write(root / "rain" / "X2" / f"norain-{number}x2.png", index, "rainy")
        files.write(root / "norain" / f"norain-{number}.png", index, "clean")
    junk(root / "rain" / "X2")
    return [9, 0]


def build_rain1400(root: Path, files, junk) -> list[int]:
    for number, index in [(901, 3), (902, 10)]:
        files.write(root / "ground_truth" / f"{number}.jpg", index, "clean")
        for variant in range(3):
            files.write(
                root / "rainy_image" / f"{number}_{variant + 1}.jpg", index, "rainy", variant
            )
    junk(root / "rainy_image")
    return [3, 3, 3, 10, 10, 10]


def build_side_by_side(root: Path, files, junk) -> list[int]:
    files.write_side_by_side(root / "1.png", 5, rainy_side="left")
    files.write_side_by_side(root / "2.jpg", 6, rainy_side="left", odd=True)
    junk(root)
    return [5, 6]


def build_rain12(root: Path, files, junk) -> list[int]:
    for name, index, suffix in [("001", 7, ".png"), ("002", 2, ".PNG"), ("003", 0, ".jpg")]:
        files.write(root / f"{name}_in{suffix}", index, "rainy")
        files.write(root / f"{name}_GT.png", index, "clean")
    junk(root)
    return [7, 2, 0]


def build_spa_list(root: Path, files, junk) -> list[int]:
    for scene, index in [("a", 1), ("b", 4)]:
        files.write(root / "real_world" / scene / f"{scene}_rain.png", index, "rainy")
        files.write(root / "real_world" / scene / f"{scene}_gt.png", index, "clean")
    (root / "real_world.txt").write_text(
        "./real_world/a/a_rain.png ./real_world/a/a_gt.png\n"
        "\n"
        "  real_world/b/b_rain.png   real_world/b/b_gt.png  "  # no final newline
    )
    return [1, 4]


def build_spa_test(root: Path, files, junk) -> list[int]:
    for number, index in [("000", 11), ("001", 5)]:
        files.write(root / "rain" / f"{number}.png", index, "rainy")
        files.write(root / "gt" / f"{number}gt.png", index, "clean")
    junk(root / "gt")
    return [11, 5]


def build_paired(root: Path, files, junk) -> list[int]:
    for name, index in [("x", 8), ("y", 3)]:
        files.write(root / "lq" / f"{name}.bmp", index, "rainy")
        files.write(root / "GT" / f"{name}.png", index, "clean")
    junk(root / "lq")
    return [8, 3]


BUILDERS = {
    "rain13k": build_rain13k,
    "jorder": build_jorder,
    "raintrain": build_raintrain,
    "rain200": build_rain200,
    "rain1400": build_rain1400,
    "side_by_side": build_side_by_side,
    "rain12": build_rain12,
    "spa_list": build_spa_list,
    "spa_test": build_spa_test,
    "paired": build_paired,
}
LIST_FILE = "real_world.txt"


def _root(tmp_path: Path, layout: str) -> Path:
    return tmp_path / LIST_FILE if layout == "spa_list" else tmp_path


def test_every_layout_has_a_builder():
    assert set(BUILDERS) == set(LAYOUTS)


@pytest.mark.parametrize("layout", BUILDERS)
def test_auto_detection_names_the_layout(layout, tmp_path, files, junk):
    BUILDERS[layout](tmp_path, files, junk)
    assert detect_layout(_root(tmp_path, layout)) == layout


@pytest.mark.parametrize("layout", BUILDERS)
@pytest.mark.parametrize("by_name", [False, True], ids=["auto", "named"])
def test_pairs_show_the_same_scene_in_name_order(layout, by_name, tmp_path, files, junk):
    expected = BUILDERS[layout](tmp_path, files, junk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFilesWarning)
        pairs = find_pairs(_root(tmp_path, layout), layout=layout if by_name else "auto")
    assert files.pair_indices(pairs) == expected


@pytest.mark.parametrize(
    ("layout", "skipped"),
    [("rain13k", 3), ("jorder", 3), ("raintrain", 3), ("rain1400", 3), ("rain12", 3)],
)
def test_junk_is_skipped_with_one_warning_that_counts_it(layout, skipped, tmp_path, files, junk):
    BUILDERS[layout](tmp_path, files, junk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        find_pairs(tmp_path)
    junk_warnings = [w for w in caught if issubclass(w.category, SkippedFilesWarning)]
    assert len(junk_warnings) == 1
    assert f"skipped {skipped} file(s)" in str(junk_warnings[0].message)


def test_rain13k_release_root_gives_the_training_pairs_only(tmp_path, files, junk):
    expected = build_rain13k_release(tmp_path, files, junk)
    pairs = find_pairs(tmp_path)
    assert files.pair_indices(pairs) == expected
    assert all("train" in pair.rainy.parts for pair in pairs)


def test_rainstreak_files_become_the_rain_layer(tmp_path, files, junk):
    build_raintrain(tmp_path, files, junk)
    with pytest.warns(SkippedFilesWarning):
        pairs = find_pairs(tmp_path)
    assert [pair.rain.name for pair in pairs] == [
        "rainstreak-3.png",
        "rainstreak-12.png",
        "rainstreak-100.png",
    ]


def test_rain200_without_x2_folder(tmp_path, files):
    files.write(tmp_path / "rain" / "norain-5x2.png", 4, "rainy")
    files.write(tmp_path / "norain" / "norain-5.png", 4, "clean")
    assert files.pair_indices(find_pairs(tmp_path)) == [4]


def test_spa_test_copy_with_norain_folder_and_equal_names(tmp_path, files):
    files.write(tmp_path / "rain" / "7.png", 6, "rainy")
    files.write(tmp_path / "norain" / "7.png", 6, "clean")
    assert detect_layout(tmp_path) == "spa_test"
    assert files.pair_indices(find_pairs(tmp_path)) == [6]


@pytest.mark.parametrize("written_side", ["left", "right"])
def test_side_by_side_rainy_half_follows_the_parameter(written_side, tmp_path, files):
    files.write_side_by_side(tmp_path / "1.png", 2, rainy_side=written_side, odd=True)
    pairs = find_pairs(tmp_path, rainy_side=written_side)
    assert pairs[0].rainy_half == written_side
    assert files.pair_indices(pairs) == [2]
    rainy, clean, rain = load_pair(pairs[0])
    assert rainy.shape == clean.shape == (40, 48, 3) and rain is None


def test_side_by_side_with_the_wrong_side_gives_clean_as_rainy(tmp_path, files):
    files.write_side_by_side(tmp_path / "1.png", 2, rainy_side="left")
    rainy, clean, _ = load_pair(find_pairs(tmp_path, rainy_side="right")[0])
    assert np.array_equal(rainy, files.examples[2].clean)


def test_list_line_naming_a_missing_file_is_an_error(tmp_path, files, junk):
    build_spa_list(tmp_path, files, junk)
    (tmp_path / "real_world" / "b" / "b_gt.png").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"line 3: .*b_gt\.png"):
        find_pairs(tmp_path / LIST_FILE)


def test_list_line_with_one_path_is_an_error(tmp_path):
    (tmp_path / "list.txt").write_text("only_one.png\n")
    with pytest.raises(DatasetLayoutError, match=r"line 1: expected '<rainy path> <clean path>'"):
        find_pairs(tmp_path / "list.txt")


def test_rainy_image_without_clean_partner_is_named(tmp_path, files, junk):
    build_rain13k(tmp_path, files, junk)
    files.write(tmp_path / "input" / "77.png", 1, "rainy")
    with pytest.raises(
        DatasetLayoutError, match=r"1 rainy image\(s\) have no clean partner.*77\.png"
    ):
        find_pairs(tmp_path)


def test_clean_image_without_rainy_partner_is_named(tmp_path, files, junk):
    build_jorder(tmp_path, files, junk)
    files.write(tmp_path / "norain-005.png", 1, "clean")
    with pytest.raises(DatasetLayoutError, match=r"norain-005\.png \(expected .*rainy/rain-5"):
        find_pairs(tmp_path)


def test_clean_image_without_any_rainy_version_is_named(tmp_path, files, junk):
    build_rain1400(tmp_path, files, junk)
    files.write(tmp_path / "ground_truth" / "903.jpg", 1, "clean")
    with pytest.raises(DatasetLayoutError, match=r"903\.jpg"):
        find_pairs(tmp_path)


def test_file_breaking_the_naming_rule_is_named(tmp_path, files, junk):
    build_jorder(tmp_path, files, junk)
    files.write(tmp_path / "rainy" / "holiday.png", 1, "rainy")
    with pytest.raises(DatasetLayoutError, match=r"holiday\.png does not follow .*rain-N"):
        find_pairs(tmp_path)


def test_two_files_for_one_image_are_an_error(tmp_path, files, junk):
    build_rain13k(tmp_path, files, junk)
    files.write(tmp_path / "input" / "2.jpg", 0, "rainy")
    with pytest.raises(DatasetLayoutError, match=r"2\.PNG and .*2\.jpg"):
        find_pairs(tmp_path)


def test_missing_root_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        find_pairs(tmp_path / "nowhere")


def test_empty_folder_is_reported_with_what_was_expected(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"is empty: expected .*input/NAME ↔ target/NAME"):
        find_pairs(tmp_path)


def test_folder_of_junk_matches_no_layout(tmp_path, junk):
    junk(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"no rainy/clean pairs under .*rain-N"):
        find_pairs(tmp_path)


def test_empty_image_folder_of_a_layout_is_named(tmp_path, files):
    files.write(tmp_path / "input" / "1.png", 0, "rainy")
    (tmp_path / "target").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"no images in .*target"):
        find_pairs(tmp_path)


def test_several_folder_pairs_are_ambiguous(tmp_path, files):
    for folder, role in [("rainy", "rainy"), ("gt", "clean"), ("clean", "clean")]:
        files.write(tmp_path / folder / "1.png", 0, role)
    with pytest.raises(DatasetLayoutError, match=r"several rainy/clean folder pairs"):
        find_pairs(tmp_path)


def test_unknown_layout_name_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set layout 'rain13K'") as error:
        find_pairs(tmp_path, layout="rain13K")
    assert all(name in str(error.value) for name in LAYOUTS)


def test_undecodable_image_stops_setup_and_is_named(tmp_path, files):
    files.write(tmp_path / "input" / "1.png", 0, "rainy")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "1.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(ImageReadError, match=r"target/1\.png"):
        find_pairs(tmp_path)


def test_a_single_image_is_not_taken_for_a_list_file(tmp_path, files):
    image = files.write(tmp_path / "one.png", 0, "rainy")
    with pytest.raises(DatasetLayoutError, match="no rainy/clean pairs under .*one.png"):
        find_pairs(image)

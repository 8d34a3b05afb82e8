"""Pairs whose images differ in size: a few pixels are cropped away, more is an error."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from derain.data import (
    MAX_SIZE_DIFFERENCE,
    DatasetLayoutError,
    SizeMismatchWarning,
    find_pairs,
    load_pair,
    write_image,
)


def _write_pair(root, name, example, rainy_shape, clean_shape):
    """Rainy and clean versions of `example`, padded (by edge repeat) to the given shapes."""
    for folder, image, shape in [
        ("input", example.rainy, rainy_shape),
        ("target", example.clean, clean_shape),
    ]:
        pad = ((0, shape[0] - image.shape[0]), (0, shape[1] - image.shape[1]), (0, 0))
        write_image(root / folder / f"{name}.png", np.pad(image, pad, mode="edge"))


def test_pairs_a_few_pixels_apart_draw_one_warning(tmp_path, examples):
    _write_pair(tmp_path, "1", examples[0], (42, 48), (40, 48))
    _write_pair(tmp_path, "2", examples[1], (40, 48 + MAX_SIZE_DIFFERENCE), (40, 48))
    _write_pair(tmp_path, "3", examples[2], (40, 48), (40, 48))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        find_pairs(tmp_path)
    mismatch = [w for w in caught if issubclass(w.category, SizeMismatchWarning)]
    assert len(mismatch) == 1 and "2 pair(s)" in str(mismatch[0].message)


def test_pairs_a_few_pixels_apart_load_cropped_to_the_common_top_left(tmp_path, examples):
    _write_pair(tmp_path, "1", examples[0], (43, 50), (40, 48))
    with pytest.warns(SizeMismatchWarning):
        (pair,) = find_pairs(tmp_path)
    rainy, clean, _ = load_pair(pair)
    assert rainy.shape == clean.shape == (40, 48, 3)
    assert np.abs(rainy - examples[0].rainy).max() < 1e-6


def test_pairs_far_apart_are_rejected_naming_both_files(tmp_path, examples):
    _write_pair(tmp_path, "1", examples[0], (40, 48 + MAX_SIZE_DIFFERENCE + 1), (40, 48))
    with pytest.raises(DatasetLayoutError, match=r"input/1\.png is 40×53.*target/1\.png is 40×48"):
        find_pairs(tmp_path)


def test_size_check_can_be_left_to_loading_time(tmp_path, examples):
    _write_pair(tmp_path, "1", examples[0], (60, 48), (40, 48))
    (pair,) = find_pairs(tmp_path, check_images=False)
    with pytest.raises(DatasetLayoutError, match="differ by more than"):
        load_pair(pair)

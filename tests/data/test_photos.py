"""The bundled photos: a split by photograph, so no test scene is trained on."""

from __future__ import annotations

import numpy as np
import pytest

from derain.data import PHOTO_SPLITS, SyntheticEvalDataset, SyntheticTrainDataset, load_photo
from derain.data.photos import crop_around, fit_longest_side


def test_no_photo_is_in_two_splits():
    names = [name for split in PHOTO_SPLITS.values() for name in split]
    assert len(names) == len(set(names))
    assert set(PHOTO_SPLITS["test"]) == {"coffee", "chelsea"}


def test_stereo_halves_stay_in_one_split():
    holding = {s for s, names in PHOTO_SPLITS.items() for n in names if n.startswith("stereo")}
    assert holding == {"train"}


@pytest.mark.parametrize("name", [n for names in PHOTO_SPLITS.values() for n in names])
def test_every_photo_loads_as_rgb_float(name):
    photo = load_photo(name)
    assert photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.float32
    assert photo.min() >= 0 and photo.max() <= 1 and not photo.flags.writeable


def test_training_tiles_come_from_training_photos_only():
    tiles = SyntheticTrainDataset().tiles
    assert {name for name, _, _ in tiles} == set(PHOTO_SPLITS["train"])
    assert 300 <= len(tiles) <= 1000  # "a few hundred" patches before flips


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_images_come_from_their_split(split):
    dataset = SyntheticEvalDataset(split, preset="light", draws=2, max_side=128)
    photos = {dataset[i]["name"].rsplit("_light_", 1)[0] for i in range(len(dataset))}
    assert photos == set(PHOTO_SPLITS[split])


def test_fit_longest_side_keeps_aspect_and_8_bit_levels():
    small = fit_longest_side(load_photo("coffee"), 300)
    assert small.shape == (200, 300, 3)
    assert np.array_equal(np.round(small * 255) / 255, small)


def test_crop_around_reflect_pads_small_images():
    image = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    crop = crop_around(image, 2, 2, 8)
    assert crop.shape == (8, 8, 3)
    assert np.array_equal(crop[:4, :5], image)
    assert np.array_equal(crop[4, :5], image[2])  # reflected, not repeated

"""derain.benchmarks.error_split: the split of a restored image's error into streak and other pixels."""

from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(scope="module")
def split():
    from derain.benchmarks import error_split

    return error_split


def _scene():
    torch.manual_seed(0)
    clean = 0.2 + 0.5 * torch.rand(3, 24, 32)
    rainy = clean.clone()
    rainy[:, :, 10] += 0.3  # one vertical streak
    return rainy, clean


def test_streak_mask_is_the_changed_pixels_and_their_neighbours(split):
    rainy, clean = _scene()
    mask = split.streak_mask(rainy, clean)
    assert mask[:, 9:12].all()  # the streak and one pixel either side
    assert mask.sum() == 24 * 3
    # differences within one 8-bit level are not rain
    assert not split.streak_mask(clean + 0.5 / 255, clean).any()


def test_identity_output_is_all_streak_error(split):
    rainy, clean = _scene()
    scores = split.split_scores(rainy, clean, rainy)
    assert scores["output"] == pytest.approx(scores["input"])
    assert scores["on_streaks_only"] == pytest.approx(scores["input"])
    assert math.isinf(scores["clean_streaks"])  # nothing wrong away from the streak
    assert scores["streak_share"] == pytest.approx(3 / 32)


def test_output_that_only_blurs_away_from_the_streak(split):
    rainy, clean = _scene()
    output = clean + 0.05
    output[:, :, 9:12] = clean[:, :, 9:12]  # the streak removed exactly
    scores = split.split_scores(rainy, clean, output)
    assert math.isinf(scores["on_streaks_only"])  # streak removal alone would be perfect
    assert scores["clean_streaks"] == pytest.approx(scores["output"])
    assert scores["output"] < 30

"""SyntheticRain: the additive streak model, its presets and its determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from derain.data import HEAVY_RAIN, LIGHT_RAIN, RainConfig, SyntheticRain, load_photo, to_uint8
from derain.data.synthetic import streak_kernel


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return load_photo("astronaut")


@pytest.fixture(scope="module")
def patch(astronaut) -> np.ndarray:
    return astronaut[100:196, 200:296]


def _y_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR on the rounded BT.601 studio-range Y of 8-bit RGB (docs/protocol.md)."""

    def luma(image):
        rgb = to_uint8(image).astype(np.float64)
        return np.round(
            16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
        )

    return float(10 * np.log10(255**2 / np.mean((luma(a) - luma(b)) ** 2)))


@pytest.mark.parametrize("preset", ["light", "heavy"])
def test_same_seed_and_index_give_the_same_rain(patch, preset):
    first = SyntheticRain(preset, seed=3)(patch, 11)
    again = SyntheticRain(preset, seed=3)(patch, 11)
    assert np.array_equal(first.rainy, again.rainy) and np.array_equal(first.rain, again.rain)
    assert first.params == again.params


@pytest.mark.parametrize("preset", ["light", "heavy"])
def test_other_seed_or_index_gives_other_rain(patch, preset):
    base = SyntheticRain(preset, seed=3)(patch, 11).rain
    assert not np.array_equal(base, SyntheticRain(preset, seed=4)(patch, 11).rain)
    assert not np.array_equal(base, SyntheticRain(preset, seed=3)(patch, 12).rain)


def test_key_tuple_extends_the_seed(patch):
    rain = SyntheticRain("light", seed=3)
    assert not np.array_equal(rain(patch, (11, 0)).rain, rain(patch, (11, 1)).rain)


@pytest.mark.parametrize("preset", ["light", "heavy"])
def test_outputs_are_float32_images_in_unit_range(patch, preset):
    sample = SyntheticRain(preset)(patch, 0)
    for image in (sample.rainy, sample.clean, sample.rain):
        assert image.dtype == np.float32 and image.shape == patch.shape
        assert image.min() >= 0 and image.max() <= 1
    assert np.array_equal(sample.rain[..., 0], sample.rain[..., 2])  # rain is grey
    assert sample.rain.max() > 0


def test_light_rain_is_clean_plus_rain_where_nothing_clipped(patch):
    sample = SyntheticRain("light", seed=1)(patch, 5)
    unclipped = sample.rainy < 1
    assert np.abs(sample.rainy - sample.clean - sample.rain)[unclipped].max() < 1e-6
    assert np.array_equal(sample.rainy[~unclipped], np.ones_like(sample.rainy[~unclipped]))


def test_quantized_light_rain_holds_exactly_in_8_bit(patch):
    sample = SyntheticRain("light", seed=1)(patch, 5, quantize=True)
    rainy, clean, rain = (
        to_uint8(x).astype(int) for x in (sample.rainy, sample.clean, sample.rain)
    )
    assert np.array_equal(rainy, np.minimum(clean + rain, 255))


def test_heavy_rain_adds_haze_within_its_ranges(patch):
    sample = SyntheticRain("heavy", seed=2)(patch, 0)
    assert HEAVY_RAIN.transmission[0] <= sample.params["transmission"] <= HEAVY_RAIN.transmission[1]
    assert 3 <= len(sample.params["layers"]) <= 5
    transmission, light = sample.params["transmission"], sample.params["atmospheric_light"]
    expected = np.clip(
        transmission * (sample.clean + sample.rain) + (1 - transmission) * light, 0, 1
    )
    assert np.abs(sample.rainy - expected).max() < 1e-5


def test_drawn_parameters_stay_in_the_configured_ranges(patch):
    config = RainConfig(length=(10, 12), angle=(40, 45), width=(2, 2.5), layers=(2, 2))
    sample = SyntheticRain(config)(patch, 0)
    for layer in sample.params["layers"]:
        assert 10 <= layer["length"] <= 12 and 40 <= layer["angle"] <= 45
        assert 2 <= layer["width"] <= 2.5
    assert len(sample.params["layers"]) == 2


def test_no_seeds_give_no_rain(patch):
    sample = SyntheticRain(dataclasses.replace(LIGHT_RAIN, density=(0, 0)))(patch, 0)
    assert not sample.rain.any() and np.array_equal(sample.rainy, sample.clean)


def test_streak_kernel_is_peak_normalised_and_follows_the_angle():
    upright = streak_kernel(length=21, angle=0, width=1)
    assert upright.max() == pytest.approx(1.0)
    assert upright.shape[0] > 3 * upright.shape[1]  # a vertical streak
    leaning = streak_kernel(length=21, angle=45, width=1)
    rows, cols = np.nonzero(leaning.numpy() > 0.5)
    assert np.corrcoef(rows, cols)[0, 1] > 0.9  # positive angle: down and to the right


@pytest.mark.parametrize(("preset", "target_db"), [("light", 28.0), ("heavy", 12.0)])
def test_presets_match_rain100_input_psnr_on_astronaut(astronaut, preset, target_db):
    rain = SyntheticRain(preset, seed=0)
    scores = [_y_psnr(s.rainy, s.clean) for s in (rain(astronaut, i) for i in range(8))]
    assert abs(np.mean(scores) - target_db) < 1.5

"""Rain families beyond the papers' streak model: the image-editor recipe (noise cut by levels,
screen blend), accumulation that follows the scene, rain at several depths, opaque scene lines,
and mixes that name or leave out a family."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from derain.data import DerainDataModule, SyntheticRain, SyntheticSet, load_photo
from derain.data.synthetic import (
    RAIN_FAMILIES,
    RAIN_PRESETS,
    RainConfig,
    _level_cut_noise,
    expand_presets,
    paint_lines,
    paint_pattern,
    rain_config,
    scene_haze,
)

NEW_PRESETS = ("screen", "veil", "depth")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.array(load_photo("astronaut")[:192, :256])


@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_each_family_is_a_function_of_seed_and_key(photo, preset):
    rain = SyntheticRain(preset, seed=5)
    first, again = rain(photo, (1, 2)), rain(photo, (1, 2))
    other = rain(photo, (1, 3))
    assert np.array_equal(first.rainy, again.rainy)
    assert not np.array_equal(first.rainy, other.rainy)
    assert first.rainy.shape == photo.shape and first.rainy.dtype == np.float32
    assert first.rainy.min() >= 0 and first.rainy.max() <= 1
    assert np.array_equal(first.clean, photo)  # the target is the photo itself


def test_screen_blend_is_what_image_editors_compute(photo):
    config = rain_config("screen", layers=(1, 1))
    sample = SyntheticRain(config, seed=1)(photo, 0)
    expected = 1 - (1 - photo) * (1 - sample.rain)
    np.testing.assert_allclose(sample.rainy, expected, atol=1e-6)
    # screening shows less on bright pixels than adding would
    additive = np.clip(photo + sample.rain, 0, 1)
    assert (sample.rainy <= additive + 1e-6).all() and (sample.rainy < additive - 1e-3).any()


def test_noise_seeds_keep_the_brightest_share_and_vary_in_brightness():
    rng = np.random.default_rng(0)
    seeds = _level_cut_noise((400, 400), share=0.02, sigma=0.8, rng=rng)
    lit = seeds > 0
    assert lit.mean() == pytest.approx(0.02, rel=0.15)
    values = seeds[lit]
    assert values.max() <= 1 and values.std() > 0.05  # specks of many brightnesses, not one


def test_scene_haze_is_thicker_at_the_top_and_takes_the_photos_sky_colour():
    clean = torch.zeros(3, 64, 80)
    clean[:, :10] = torch.tensor([0.3, 0.5, 0.9])[:, None, None]  # a blue sky strip at the top
    clean[:, 10:] = 0.2
    rng = np.random.default_rng(3)
    veil, colour = scene_haze(clean, transmission=0.5, grey=0.8, rng=rng)
    assert veil.shape == (1, 64, 80)
    assert float(veil.min()) == pytest.approx(0.5, abs=1e-5)  # the farthest point: T itself
    assert veil[0, :8].mean() < veil[0, -8:].mean()  # less light gets through far away
    # the veil's colour leans to the sky's blue, not a constant grey
    assert colour[2, 0, 0] > colour[0, 0, 0] + 0.1


def test_veil_rain_differs_from_uniform_haze(photo):
    scene = SyntheticRain("veil", seed=2)(photo, 0)
    uniform = SyntheticRain(rain_config("veil", haze="uniform"), seed=2)(photo, 0)
    assert "atmospheric_colour" in scene.params and "atmospheric_colour" not in uniform.params
    assert not np.allclose(scene.rainy, uniform.rainy, atol=0.01)


def test_depth_layers_each_have_a_scale_and_near_ones_are_softer(photo):
    sample = SyntheticRain("depth", seed=4)(photo, 0)
    layers = sample.params["layers"]
    assert 3 <= len(layers) <= 5
    scales = [layer["scale"] for layer in layers]
    assert all(1 <= s <= 5 for s in scales) and len(set(scales)) == len(scales)
    config = RAIN_PRESETS["depth"]
    for layer in layers:
        assert layer["defocus"] == pytest.approx(config.near_defocus * (layer["scale"] - 1))


def test_a_near_layer_has_longer_and_fewer_streaks_than_a_far_one():
    photo = np.zeros((256, 256, 3), np.float32)

    def layer(scale: float) -> np.ndarray:
        config = RainConfig(
            layers=(1, 1),
            density=(0.004, 0.004),
            length=(10.0, 10.0),
            angle=(0.0, 0.0),
            intensity=(0.8, 0.8),
            layer_scale=(scale, scale),
        )
        return SyntheticRain(config, seed=0)(photo, 0).rain[..., 0] > 0.05

    far, near = layer(1.0), layer(4.0)
    assert near.mean() > 0  # near rain is there, and sparser over the image: fewer streaks
    assert _count_blobs(near) < _count_blobs(far) / 4


def _count_blobs(mask: np.ndarray) -> int:
    from scipy import ndimage

    return int(ndimage.label(mask)[1])


def test_scene_lines_belong_to_the_target(photo):
    config = rain_config("light", scene_lines=1.0, scene_line_count=(3, 3), rain_free=1.0)
    sample = SyntheticRain(config, seed=9)(photo, 0)
    assert len(sample.params["scene_lines"]) == 3
    assert np.array_equal(sample.rainy, sample.clean)  # rain-free: nothing to remove
    changed = np.abs(sample.clean - photo).max(axis=2) > 0.1
    assert 0.002 < changed.mean() < 0.5  # lines were painted, the photo is still there
    rainy = SyntheticRain(rain_config("light", scene_lines=1.0), seed=9)(photo, 0)
    assert not np.array_equal(rainy.clean, photo)  # painted lines stay in the rainy target too


def test_painted_lines_are_opaque_and_anti_aliased():
    image = torch.full((3, 40, 40), 0.5)
    painted, lines = paint_lines(image, np.random.default_rng(1), count=(1, 1))
    (line,) = lines
    colour = torch.tensor(line["colour"])[:, None, None]
    coverage = ((painted - image) / (colour - image)).mean(0)
    # fully covered pixels on the line, partly covered ones at its edges, untouched ones away
    assert coverage.max() == pytest.approx(line["opacity"], abs=1e-4)
    assert ((coverage > 0.05) & (coverage < line["opacity"] - 0.05)).any()
    assert (coverage.abs() < 1e-6).float().mean() > 0.5


def test_scene_patterns_belong_to_the_target_and_leave_the_rain_as_it_was(photo):
    config = rain_config("light", scene_patterns=1.0, rain_free=1.0)
    sample = SyntheticRain(config, seed=9)(photo, 0)
    assert "scene_pattern" in sample.params
    assert np.array_equal(sample.rainy, sample.clean)  # rain-free: the bars are not rain
    changed = np.abs(sample.clean - photo).max(axis=2) > 0.1
    assert 0.01 < changed.mean() < 0.9
    plain = SyntheticRain("light", seed=9)(photo, 0)
    barred = SyntheticRain(rain_config("light", scene_patterns=1.0), seed=9)(photo, 0)
    np.testing.assert_array_equal(barred.rain, plain.rain)  # the same streaks, on a fence
    assert not np.array_equal(barred.clean, photo)
    never = SyntheticRain(rain_config("light", scene_patterns=0.0), seed=9)(photo, 0)
    assert np.array_equal(never.rainy, plain.rainy) and "scene_pattern" not in never.params


def test_a_painted_pattern_repeats_its_bars_at_its_period():
    image = torch.full((3, 96, 96), 0.3)
    for seed in range(40):  # a vertical, bright, one-set pattern over most of the image
        painted, pattern = paint_pattern(image, np.random.default_rng(seed))
        if (
            pattern["cross_period"] is None
            and abs(pattern["angle"]) < 3
            and pattern["grey"] > 0.5
            and pattern["height"] > 60
            and pattern["period"] > 6
        ):
            break
    else:
        pytest.fail("no upright pattern in 40 draws")
    row = int(pattern["top"] + pattern["height"] / 2)
    profile = (painted[0, row] - 0.3).numpy()
    inside = slice(int(pattern["left"]) + 2, int(pattern["left"] + pattern["width"]) - 2)
    bars = profile[inside] > 0.2
    starts = np.flatnonzero(bars[1:] & ~bars[:-1])
    assert len(starts) >= 2
    # bars start one period apart (the slight tilt moves them by at most a pixel or two)
    assert np.allclose(np.diff(starts), pattern["period"], atol=2.0)
    assert profile[: int(pattern["left"]) - 1].max(initial=0.0) < 1e-6  # nothing outside


def test_a_backed_pattern_has_the_same_bars_on_a_fill_of_the_opposite_brightness():
    image = torch.full((3, 96, 96), 0.5)
    seen = set()
    for seed in range(30):
        plain, pattern = paint_pattern(image, np.random.default_rng(seed))
        backed, backed_pattern = paint_pattern(image, np.random.default_rng(seed), backing=1.0)
        fill = backed_pattern.pop("backing")
        assert backed_pattern == pattern  # the same bars: the fill is drawn after them
        bright = pattern["grey"] >= 0.7
        assert (fill["grey"] <= 0.3) if bright else (fill["grey"] >= 0.6)
        seen.add(bright)
        top, left = int(pattern["top"]) + 2, int(pattern["left"]) + 2  # off the soft edges
        bottom = int(pattern["top"] + pattern["height"]) - 2
        right = int(pattern["left"] + pattern["width"]) - 2
        changed = (backed - plain).abs().amax(0)
        inside = changed[top:bottom, left:right]
        gaps = (plain - image).abs().amax(0)[top:bottom, left:right] < 1e-6  # no bar there
        assert gaps.any()
        expected = (0.5 - fill["grey"]) * fill["opacity"]
        assert inside[gaps].min() > abs(expected) - 0.07  # the gaps take the fill
        outside = torch.ones_like(changed, dtype=torch.bool)
        outside[max(0, top - 3) : bottom + 4, max(0, left - 3) : right + 4] = False
        assert float(changed[outside].sum()) < 1e-4  # nothing outside the patch
    assert seen == {True, False}
    assert (
        paint_pattern(image, np.random.default_rng(0), backing=0.0)[1]
        == paint_pattern(image, np.random.default_rng(0))[1]
    )


def test_rain_config_pattern_backing_reaches_the_painted_target(photo):
    plain = SyntheticRain(rain_config("light", scene_patterns=1.0), seed=9)(photo, 0)
    backed = SyntheticRain(rain_config("light", scene_patterns=1.0, pattern_backing=1.0), seed=9)(
        photo, 0
    )
    assert "backing" in backed.params["scene_pattern"]
    assert "backing" not in plain.params["scene_pattern"]
    np.testing.assert_array_equal(backed.rain, plain.rain)
    assert not np.array_equal(backed.clean, plain.clean)


def test_pattern_backing_must_be_a_probability():
    with pytest.raises(ValueError, match="pattern_backing must be a probability"):
        RainConfig(pattern_backing=-0.1)


def test_pattern_bar_max_caps_the_bars_and_leaves_every_other_draw():
    image = torch.full((3, 96, 96), 0.4)
    capped_widths = []
    for seed in range(40):
        wide, pattern = paint_pattern(image, np.random.default_rng(seed), backing=0.5)
        narrow, capped = paint_pattern(image, np.random.default_rng(seed), backing=0.5, bar_max=3.0)
        assert 1.0 <= capped["bar_width"] <= 3.0
        assert {k: v for k, v in capped.items() if k != "bar_width"} == {
            k: v for k, v in pattern.items() if k != "bar_width"
        }
        if pattern["period"] / 2 <= 3.0:  # no cap to apply: the very same pattern
            assert capped["bar_width"] == pattern["bar_width"]
            assert torch.equal(narrow, wide)
        capped_widths.append(capped["bar_width"])
        # the default is no cap: half the longest period
        assert (
            paint_pattern(image, np.random.default_rng(seed), backing=0.5, bar_max=14.0)[1]
            == pattern
        )
    assert max(capped_widths) > 2.0  # the cap bounds the draw, it does not pin it to 1


def test_rain_config_pattern_bar_max_reaches_the_painted_target(photo):
    config = rain_config("light", scene_patterns=1.0, pattern_bar_max=2.0)
    for seed in range(6):
        capped = SyntheticRain(config, seed=seed)(photo, 0)
        assert capped.params["scene_pattern"]["bar_width"] <= 2.0
    with pytest.raises(ValueError, match="pattern_bar_max must be at least 1"):
        RainConfig(pattern_bar_max=0.5)


def test_scene_patterns_must_be_a_probability():
    with pytest.raises(ValueError, match="scene_patterns must be a probability"):
        RainConfig(scene_patterns=1.5)


def test_the_papers_presets_draw_what_they_drew_before(photo):
    """The new options draw from streams of their own: the papers' presets, which the bundled
    model's fixtures and every earlier figure were made with, stay as they were."""
    plain = SyntheticRain("light", seed=3)(photo, 7)
    with_defaults = SyntheticRain(
        dataclasses.replace(RAIN_PRESETS["light"], noise_blur=(2.0, 3.0)), seed=3
    )(photo, 7)
    assert np.array_equal(plain.rainy, with_defaults.rainy)
    lines = SyntheticRain(rain_config("light", scene_lines=1.0), seed=3)(photo, 7)
    np.testing.assert_array_equal(  # the same streaks, on a photo with lines
        lines.rain, plain.rain
    )


def test_families_expand_and_one_can_be_held_out():
    assert expand_presets(["streak", "screen"]) == ("light", "heavy", "large", "screen")
    assert expand_presets(["streak", "screen", "veil"], holdout="streak") == ("screen", "veil")
    assert expand_presets(["light", "depth"], holdout="none") == ("light", "depth")
    assert set(RAIN_FAMILIES) == {"streak", "screen", "veil", "depth"}
    with pytest.raises(ValueError, match="families are streak, screen"):
        expand_presets(["drizzle"])
    with pytest.raises(ValueError, match="to hold out"):
        expand_presets(["streak"], holdout="light")
    with pytest.raises(ValueError, match="no rain left"):
        expand_presets(["screen"], holdout="screen")


@pytest.mark.parametrize(
    ("setting", "value"), [("seeds", "dots"), ("blend", "multiply"), ("haze", "fog")]
)
def test_an_unknown_rendering_choice_is_refused_with_the_choices(setting, value):
    with pytest.raises(ValueError, match=f"{setting} must be one of"):
        rain_config("light", **{setting: value})


def test_a_training_mix_leaves_out_the_held_out_family_in_training_and_validation():
    datamodule = DerainDataModule(
        train=SyntheticSet("train", presets=("streak", "screen", "veil"), holdout="screen"),
        val={"mix": SyntheticSet("val", presets=("streak", "screen"), holdout="screen")},
        patch_size=32,
        batch_size=2,
        num_workers=0,
        limit=4,
    )
    datamodule.setup("fit")
    train = datamodule.train_set
    assert train.presets == ("light", "heavy", "large", "veil")
    val_presets = {item.split("_")[-2] for item in _names(datamodule.val_sets[0])}
    assert val_presets == {"light", "heavy", "large"}


def _names(dataset) -> list[str]:
    return [dataset[i]["name"] for i in range(len(dataset))]

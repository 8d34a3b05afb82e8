"""The photo-like options of the rain generator: scale, out-of-focus rain, JPEG inputs,
rain-free samples, the extra photos, and tensor rendering."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from derain.data import DerainDataModule, SyntheticRain, SyntheticSet, load_photo, to_uint8
from derain.data.photos import PHOTO_SPLITS, photo_names
from derain.data.synthetic import LARGE_RAIN, LIGHT_RAIN, RainConfig, rain_config

# one vertical streak family with fixed size, so sizes can be compared across scales
FIXED = RainConfig(
    density=(0.0015, 0.0015),
    length=(12.0, 12.0),
    angle=(0.0, 0.0),
    width=(1.0, 1.0),
    intensity=(0.6, 0.6),
)


@pytest.fixture(scope="module")
def patch() -> np.ndarray:
    return load_photo("astronaut")[100:292, 200:392]


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer), dtype=np.float32) / np.float32(255.0)


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True along axis 0 of a 2-D mask, over every column."""
    lengths = []
    for column in mask.T:
        edges = np.diff(np.concatenate([[0], column.astype(int), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        lengths.extend(ends - starts)
    return lengths


def _streak_size(config: RainConfig, patch: np.ndarray) -> tuple[float, float]:
    """Median streak length (vertical runs) and width (horizontal runs) in pixels."""
    rain = SyntheticRain(config, seed=0)(patch, 0).rain[..., 0]
    mask = rain > 0.3 * rain.max()
    return float(np.median(_runs(mask))), float(np.median(_runs(mask.T)))


def test_jpeg_samples_are_the_same_rain_saved_as_jpeg_at_the_drawn_quality(patch):
    plain = SyntheticRain(FIXED, seed=5)(patch, 2, quantize=True)
    config = dataclasses.replace(FIXED, jpeg_share=1.0, jpeg_quality=(70, 90))
    sample = SyntheticRain(config, seed=5)(patch, 2, quantize=True)
    quality = sample.params["jpeg_quality"]
    assert 70 <= quality <= 90
    assert np.array_equal(sample.clean, plain.clean)  # the target stays lossless
    assert np.array_equal(sample.rain, plain.rain)
    assert np.array_equal(sample.rainy, _jpeg(plain.rainy, quality))
    assert not np.array_equal(sample.rainy, plain.rainy)


def test_without_jpeg_share_no_input_is_compressed(patch):
    rain = SyntheticRain(FIXED, seed=1)
    for key in range(5):
        sample = rain(patch, key, quantize=True)
        assert sample.params["jpeg_quality"] is None
        # light rain without JPEG is exactly clean + rain where nothing clipped
        unclipped = sample.rainy < 1
        assert np.abs(sample.rainy - sample.clean - sample.rain)[unclipped].max() < 1e-6


def test_jpeg_share_is_the_share_of_compressed_inputs(patch):
    rain = SyntheticRain(dataclasses.replace(FIXED, jpeg_share=0.3), seed=0)
    compressed = [
        rain(patch[:32, :32], key).params["jpeg_quality"] is not None for key in range(300)
    ]
    assert 0.2 < np.mean(compressed) < 0.4


def test_rain_free_samples_have_input_equal_to_target(patch):
    rain = SyntheticRain(dataclasses.replace(LIGHT_RAIN, rain_free=1.0), seed=0)
    sample = rain(patch, 3, quantize=True)
    assert sample.params["rain_free"] is True
    assert np.array_equal(sample.rainy, sample.clean) and not sample.rain.any()
    assert np.array_equal(sample.clean, to_uint8(patch) / np.float32(255))


def test_rain_free_jpeg_samples_compress_input_and_target_alike(patch):
    config = dataclasses.replace(LIGHT_RAIN, rain_free=1.0, jpeg_share=1.0)
    sample = SyntheticRain(config, seed=0)(patch, 3, quantize=True)
    assert np.array_equal(sample.rainy, sample.clean)
    assert np.array_equal(sample.clean, _jpeg(patch, sample.params["jpeg_quality"]))


def test_rain_free_share_is_the_share_of_samples_without_rain(patch):
    rain = SyntheticRain(dataclasses.replace(LIGHT_RAIN, rain_free=0.25), seed=0)
    free = [not rain(patch[:32, :32], key).rain.any() for key in range(300)]
    assert 0.15 < np.mean(free) < 0.35


def test_scale_grows_streak_length_and_width_by_the_scale(patch):
    sizes = {
        scale: _streak_size(dataclasses.replace(FIXED, scale=(scale, scale)), patch)
        for scale in (1.0, 2.0, 4.0)
    }
    assert sizes[2.0][0] / sizes[1.0][0] == pytest.approx(2, rel=0.3)
    assert sizes[4.0][0] / sizes[1.0][0] == pytest.approx(4, rel=0.3)
    # a one-pixel streak has no finer width to measure, and resizing softens the edges:
    # scaled streaks widen about as the scale grows
    assert 1.5 <= sizes[4.0][1] / sizes[2.0][1] <= 3.5
    assert sizes[2.0][1] > sizes[1.0][1]


def test_large_preset_draws_streaks_several_times_the_light_ones(patch):
    light_length, light_width = _streak_size(LIGHT_RAIN, patch)
    large_length, large_width = _streak_size(LARGE_RAIN, patch)
    assert large_length > 2 * light_length and large_width > 2 * light_width


def test_defocus_softens_the_streaks(patch):
    sharp = SyntheticRain(FIXED, seed=0)(patch, 0).rain[..., 0]
    soft = SyntheticRain(dataclasses.replace(FIXED, defocus=(2.0, 2.0)), seed=0)(patch, 0)
    soft = soft.rain[..., 0]
    # same peak (normalised before mixing), but the edges are gradual: fewer near-peak pixels
    # per lit pixel and a wider lit area
    assert soft.max() == pytest.approx(sharp.max(), abs=1e-5)
    assert (soft > 0.05).sum() > 1.5 * (sharp > 0.05).sum()
    assert np.abs(np.diff(soft, axis=1)).max() < np.abs(np.diff(sharp, axis=1)).max()


def test_papers_presets_do_not_change_with_the_new_options(patch):
    """The photo-like options draw from their own stream: light and heavy rain stay as before."""
    for preset in ("light", "heavy"):
        base = SyntheticRain(preset, seed=2)(patch, 7)
        with_options = SyntheticRain(rain_config(preset, jpeg_share=1.0), seed=2)(patch, 7)
        assert np.array_equal(base.rain, with_options.rain)


def test_tensor_rendering_matches_the_array_path(patch):
    rain = SyntheticRain(rain_config("large", jpeg_share=0.5), seed=3)
    key = np.random.default_rng([3, 9])
    rainy, clean, layer, params = rain.render_tensor(
        torch.from_numpy(np.array(patch).transpose(2, 0, 1)), key, quantize=True
    )
    sample = rain(patch, 9, quantize=True)
    assert rainy.shape == (3, *patch.shape[:2]) and rainy.dtype == torch.float32
    assert np.array_equal(rainy.permute(1, 2, 0).numpy(), sample.rainy)
    assert np.array_equal(layer.permute(1, 2, 0).numpy(), sample.rain)
    assert params == sample.params


def test_unknown_rain_setting_is_named():
    with pytest.raises(ValueError, match="rain_frees"):
        rain_config("light", rain_frees=0.2)


@pytest.mark.parametrize("setting", [{"rain_free": 1.5}, {"jpeg_share": -0.1}, {"scale": (0, 1)}])
def test_out_of_range_settings_are_refused(setting):
    with pytest.raises(ValueError, match=next(iter(setting))):
        rain_config("light", **setting)


def test_extra_photos_hold_out_the_validation_and_test_photos():
    training = set(photo_names("train+extra"))
    assert set(PHOTO_SPLITS["train"]) < training
    assert len(training) >= 20
    assert not training & (set(PHOTO_SPLITS["val"]) | set(PHOTO_SPLITS["test"]))


def test_unknown_photo_split_is_named():
    with pytest.raises(ValueError, match="'trian'"):
        photo_names("train+trian")


def test_a_photo_from_a_missing_package_says_how_to_get_it(monkeypatch):
    from derain.data import photos

    monkeypatch.setattr(photos.importlib.util, "find_spec", lambda name: None)
    photos._load_bundled.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match=r"derain\[demo\]"):
            photos.load_photo("tower")
    finally:
        photos._load_bundled.cache_clear()


def test_datamodule_passes_rain_settings_to_training_and_evaluation_sets():
    datamodule = DerainDataModule(
        train=SyntheticSet(split="train+extra", presets=("large",), rain={"rain_free": 1.0}),
        val={"jpeg": SyntheticSet(split="val", presets=("light",), rain={"jpeg_share": 1.0})},
        patch_size=32,
        batch_size=4,
        num_workers=0,
        limit=8,
        check_images=False,
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert torch.equal(batch["rainy"], batch["clean"])
    item = datamodule.val_datasets[0][0] if hasattr(datamodule, "val_datasets") else None
    if item is None:
        item = next(iter(datamodule.val_dataloader()[0]))
    rainy, clean = item["rainy"], item["clean"]
    assert not torch.equal(rainy, clean)


def test_written_sets_take_rain_settings(tmp_path):
    from derain.data import read_image
    from derain.data.synthetic_set import write_synthetic_set

    params = write_synthetic_set(tmp_path / "free", count=2, size=32, rain={"rain_free": 1.0})
    for number in ("001", "002"):
        rainy = read_image(tmp_path / "free" / "input" / f"{number}.png")
        clean = read_image(tmp_path / "free" / "target" / f"{number}.png")
        assert np.array_equal(rainy, clean)
    assert '"rain_free": 1.0' in params.read_text()

"""derain.evaluation.metrics reproduces the papers' MATLAB scoring (docs/protocol.md), checked with scikit-image."""

from __future__ import annotations

import io
import math
from functools import cache

import kornia
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from derain.data.io import read_image, write_image
from derain.evaluation.metrics import PSNR, SSIM, psnr, quantize_8bit, rgb_to_y, ssim

# real photographs bundled with scikit-image, cropped (rows, columns) to keep the tests fast
PHOTO_CROPS = {
    "astronaut": np.s_[:256, 128:384],
    "chelsea": np.s_[:240, 100:400],
    "coffee": np.s_[100:320, 150:450],
}
PHOTOS = tuple(PHOTO_CROPS)


@cache
def photo(name: str) -> np.ndarray:
    """A crop of a real photograph, H×W×3 float32 in [0, 1]."""
    return getattr(data, name)()[PHOTO_CROPS[name]].astype(np.float32) / 255


def _add_streaks(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive rain-like streaks: 400 bright slanted segments of 20 px."""
    h, w, _ = img.shape
    starts = rng.uniform((0, 0), (h, w), size=(400, 2))
    steps = np.arange(20)[None, :]
    rows = np.clip(starts[:, :1] + steps * 0.95, 0, h - 1).astype(int)
    cols = np.clip(starts[:, 1:] + steps * 0.3, 0, w - 1).astype(int)
    rain = np.zeros((h, w), np.float32)
    rain[rows, cols] = rng.uniform(0.2, 0.5, size=(400, 1))
    return img + rain[..., None]


def _jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(buffer, "JPEG", quality=25)
    return np.asarray(Image.open(buffer)).astype(np.float32) / 255


DEGRADE = {
    "noise": lambda img, rng: img + rng.normal(0, 0.04, img.shape),
    "blur": lambda img, rng: gaussian_filter(img, sigma=(1.2, 1.2, 0)),
    "jpeg": _jpeg,
    "streaks": _add_streaks,
    "brighter": lambda img, rng: img + 0.06,
}


@cache
def degraded(name: str, degradation: str) -> np.ndarray:
    """`photo(name)` after a synthetic degradation, H×W×3 float32 in [0, 1]."""
    out = DEGRADE[degradation](photo(name), np.random.default_rng(0))
    return np.clip(out, 0, 1).astype(np.float32)


def as_batch(*images: np.ndarray) -> torch.Tensor:
    """H×W×3 arrays → B×3×H×W tensor."""
    return torch.stack([torch.from_numpy(img).permute(2, 0, 1) for img in images])


def y_plane(img: np.ndarray, rounded: bool = True) -> np.ndarray:
    """The H×W float64 Y plane scikit-image is given (protocol.md's cross-check)."""
    return rgb_to_y(as_batch(img), rounded=rounded)[0, 0].numpy()


def skimage_ssim(a: np.ndarray, b: np.ndarray, **kwargs) -> float:
    return structural_similarity(
        a,
        b,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        **kwargs,
    )


CASES = [(name, degradation) for name in PHOTOS for degradation in DEGRADE]


@pytest.mark.parametrize(("name", "degradation"), CASES)
def test_psnr_matches_skimage_on_rounded_y(name, degradation):
    clean, rainy = photo(name), degraded(name, degradation)
    expected = peak_signal_noise_ratio(y_plane(clean), y_plane(rainy), data_range=255)
    assert psnr(as_batch(rainy), as_batch(clean)).item() == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize(("name", "degradation"), CASES)
def test_ssim_matches_skimage_on_rounded_y(name, degradation):
    clean, rainy = photo(name), degraded(name, degradation)
    expected = skimage_ssim(y_plane(rainy), y_plane(clean))
    assert ssim(as_batch(rainy), as_batch(clean)).item() == pytest.approx(expected, abs=1e-4)


def test_skimage_border_crop_is_the_valid_window_map():
    # skimage filters the full image (reflect padding) then drops (win_size - 1) // 2 = 5 px per
    # side; what remains is exactly the (H-10)×(W-10) map that no padded pixel reaches.
    clean, rainy = photo("chelsea"), degraded("chelsea", "noise")
    _, full_map = skimage_ssim(y_plane(rainy), y_plane(clean), full=True)
    h, w = clean.shape[:2]
    valid_map = full_map[5:-5, 5:-5]
    assert valid_map.shape == (h - 10, w - 10)
    ours = ssim(as_batch(rainy), as_batch(clean)).item()
    assert ours == pytest.approx(valid_map.mean(), abs=1e-10)
    assert abs(ours - full_map.mean()) > 1e-4, "the padded border must not enter the mean"


@pytest.mark.parametrize("name", PHOTOS)
def test_rgb_channel_matches_skimage_mean_of_channels(name):
    clean, rainy = photo(name), degraded(name, "noise")
    clean8, rainy8 = (np.round(img * 255).astype(np.float64) for img in (clean, rainy))
    pred, target = as_batch(rainy), as_batch(clean)
    expected_psnr = peak_signal_noise_ratio(clean8, rainy8, data_range=255)
    expected_ssim = skimage_ssim(rainy8, clean8, channel_axis=2)
    assert psnr(pred, target, channel="rgb").item() == pytest.approx(expected_psnr, abs=1e-3)
    assert ssim(pred, target, channel="rgb").item() == pytest.approx(expected_ssim, abs=1e-4)


@pytest.mark.parametrize("name", PHOTOS)
def test_unrounded_y_matches_skimage_on_unrounded_plane(name):
    clean, rainy = photo(name), degraded(name, "jpeg")
    pred, target = as_batch(rainy), as_batch(clean)
    y_pred, y_target = y_plane(rainy, rounded=False), y_plane(clean, rounded=False)
    expected_psnr = peak_signal_noise_ratio(y_target, y_pred, data_range=255)
    assert psnr(pred, target, rounded_y=False).item() == pytest.approx(expected_psnr, abs=1e-3)
    expected_ssim = skimage_ssim(y_pred, y_target)
    assert ssim(pred, target, rounded_y=False).item() == pytest.approx(expected_ssim, abs=1e-4)


def test_rgb_to_y_is_studio_range_luma_rounded_like_matlab():
    colours = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]).double()
    img = colours.view(1, 5, 1, 3).permute(0, 3, 1, 2)
    # 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for black, white, red, green, blue
    exact = [16.0, 235.0, 81.481, 144.553, 40.966]
    assert rgb_to_y(img, rounded=False).flatten().tolist() == pytest.approx(exact, abs=1e-12)
    assert rgb_to_y(img).flatten().tolist() == [16.0, 235.0, 81.0, 145.0, 41.0]


@pytest.mark.parametrize("name", PHOTOS)
def test_rgb_to_y_equals_matlab_formula_on_photos(name):
    rgb = np.round(photo(name).astype(np.float64) * 255)
    formula = 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
    np.testing.assert_array_equal(y_plane(photo(name)), np.floor(formula + 0.5))
    np.testing.assert_allclose(y_plane(photo(name), rounded=False), formula, atol=1e-10)


def test_inputs_are_read_as_8bit_files():
    # 0.5 and 0.502 both land on 8-bit 128; out-of-range values clip as a saved file would
    a = torch.full((1, 3, 16, 16), 0.5)
    b = torch.full((1, 3, 16, 16), 0.502)
    assert psnr(a, b).item() == math.inf
    assert rgb_to_y(torch.full((1, 3, 1, 1), 1.3)).item() == 235.0
    assert rgb_to_y(torch.full((1, 3, 1, 1), -0.2)).item() == 16.0


def test_a_tensor_scores_like_the_8bit_file_it_is_saved_as(tmp_path):
    # a network output is continuous; what the papers score is the PNG written from it
    clean = as_batch(photo("coffee"))
    generator = torch.Generator().manual_seed(0)
    output = clean + 0.03 * torch.randn(clean.shape, generator=generator)
    write_image(tmp_path / "out.png", output[0].permute(1, 2, 0).numpy())
    saved = as_batch(read_image(tmp_path / "out.png"))
    assert psnr(output, clean).item() == psnr(saved, clean).item()
    assert ssim(output, clean).item() == ssim(saved, clean).item()


def test_kornia_full_range_y_reads_1_32_db_lower():
    # kornia's Y is 0.299 R + 0.587 G + 0.114 B (full range); studio Y scales the same weights by
    # 219/255, so every error shrinks by that factor and PSNR rises by 20·log10(255/219).
    clean, rainy = photo("coffee"), degraded("coffee", "noise")
    pred, target = as_batch(rainy), as_batch(clean)
    pred8, target8 = (quantize_8bit(img) / 255 for img in (pred, target))
    mse = (kornia.color.rgb_to_y(pred8) - kornia.color.rgb_to_y(target8)).square().mean()
    kornia_psnr = (10 * torch.log10(1 / mse)).item()
    studio_gap = 20 * math.log10(255 / 219)
    assert psnr(pred, target, rounded_y=False).item() - kornia_psnr == pytest.approx(studio_gap)
    assert psnr(pred, target).item() - kornia_psnr > 1.2


def test_rounded_and_unrounded_y_differ_at_high_psnr():
    clean = photo("astronaut")
    rng = np.random.default_rng(1)
    # one 8-bit step on a random 20% of the values: ~47 dB, SPA-Data territory
    step = (rng.random(clean.shape) < 0.2) / 255
    pred, target = as_batch(np.clip(clean + step, 0, 1).astype(np.float32)), as_batch(clean)
    gap = psnr(pred, target, rounded_y=False).item() - psnr(pred, target).item()
    assert abs(gap) > 0.1


def test_identical_images_score_inf_psnr_and_unit_ssim():
    # the papers' script and scikit-image also give inf: a set containing an identical pair
    # averages to inf, which flags the (suspicious) result instead of hiding it
    img = as_batch(photo("chelsea"))
    assert psnr(img, img).item() == math.inf
    assert ssim(img, img).item() == pytest.approx(1.0, abs=1e-12)
    metric = PSNR()
    metric.update(img, img)
    assert metric.compute().item() == math.inf


def test_functions_score_each_image_of_a_batch():
    clean = [photo("astronaut"), photo("astronaut")]
    rainy = [degraded("astronaut", "noise"), degraded("astronaut", "blur")]
    scores = psnr(as_batch(*rainy), as_batch(*clean))
    singles = [psnr(as_batch(r), as_batch(c)).item() for r, c in zip(rainy, clean, strict=True)]
    assert scores.shape == (2,)
    assert scores.tolist() == pytest.approx(singles, abs=1e-12)


def _two_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Two pairs with very different errors, so per-image and pooled means disagree."""
    target = as_batch(photo("astronaut"), photo("astronaut"))
    pred = as_batch(degraded("astronaut", "noise"), degraded("astronaut", "brighter"))
    return pred, target


def test_psnr_metric_averages_per_image_not_pooled_error():
    pred, target = _two_pairs()
    metric = PSNR()
    metric.update(pred, target)
    per_image = psnr(pred, target)
    mse = (rgb_to_y(pred) - rgb_to_y(target)).square().mean(dim=(1, 2, 3))
    pooled = 10 * torch.log10(255**2 / mse.mean())
    assert metric.compute().item() == pytest.approx(per_image.mean().item(), abs=1e-12)
    assert abs(metric.compute().item() - pooled.item()) > 0.5


def test_metrics_compute_mean_over_batches_and_reset():
    pred, target = _two_pairs()
    third_pred, third_target = as_batch(degraded("chelsea", "jpeg")), as_batch(photo("chelsea"))
    for metric_class, score in ((PSNR, psnr), (SSIM, ssim)):
        metric = metric_class()
        metric.update(pred, target)
        metric.update(third_pred, third_target)
        scores = torch.cat([score(pred, target), score(third_pred, third_target)])
        assert metric.compute().item() == pytest.approx(scores.mean().item(), abs=1e-12)
        metric.reset()
        metric.update(third_pred, third_target)
        assert metric.compute().item() == pytest.approx(scores[2].item(), abs=1e-12)


def test_metric_states_merge_by_sum_as_in_ddp():
    # each process holds a sum and a count; merging (what DDP sync does) gives the global mean
    pred, target = _two_pairs()
    first, second = SSIM(channel="rgb"), SSIM(channel="rgb")
    first.update(pred[:1], target[:1])
    second.update(pred[1:], target[1:])
    first.merge_state(second)
    expected = ssim(pred, target, channel="rgb").mean().item()
    assert first.compute().item() == pytest.approx(expected, abs=1e-12)


def test_mismatched_shapes_are_rejected_with_the_fix():
    with pytest.raises(ValueError, match="crop or pad"):
        psnr(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 18))


def test_ssim_needs_one_full_window():
    with pytest.raises(ValueError, match="at least 11×11"):
        ssim(torch.zeros(1, 3, 10, 32), torch.zeros(1, 3, 10, 32))


def test_scores_do_not_depend_on_the_autocast_context():
    from derain.evaluation.metrics import structural_similarity

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 40, 48, generator=generator)
    pred = (target + 0.05 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    plain = (psnr(pred, target), ssim(pred, target), structural_similarity(pred, target, 1.0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = (psnr(pred, target), ssim(pred, target), structural_similarity(pred, target, 1.0))
    for a, b in zip(plain, mixed, strict=True):
        assert b.dtype == a.dtype
        torch.testing.assert_close(b, a, rtol=0, atol=0)

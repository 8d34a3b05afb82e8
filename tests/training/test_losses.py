"""derain.training.losses: the ELF paper's loss terms (its "Outputs and loss" description) on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from derain.models.elf import ELFOutput
from derain.training.losses import (
    ELFLoss,
    charbonnier,
    edge_loss,
    half_resolution,
    laplacian_edges,
    mean_psnr,
    mean_ssim,
)

EPS = 1e-3


def images(batch: int = 2, height: int = 32, width: int = 48, seed: int = 0) -> torch.Tensor:
    """Smooth random images B×3×H×W in [0, 1] (a blurred noise field, so SSIM is meaningful)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, 3, height // 4, width // 4, generator=generator)
    return F.interpolate(noise, size=(height, width), mode="bilinear", align_corners=False)


def test_charbonnier_of_a_constant_difference():
    target = images()
    d = 0.1
    assert charbonnier(target + d, target).item() == pytest.approx(math.sqrt(d**2 + EPS**2))
    assert charbonnier(target, target, eps=0.01).item() == pytest.approx(0.01)


def test_laplacian_edges_vanish_on_constant_images_away_from_the_border():
    edges = laplacian_edges(torch.full((1, 3, 20, 24), 0.7))
    assert edges.shape == (1, 3, 20, 24)
    assert edges[..., 2:-2, 2:-2].abs().max().item() < 1e-6
    # the zero-inserted image is replicated unevenly at the last (odd-index) row and column
    assert edges[..., -1, :].abs().max().item() > 0.1


def test_laplacian_edges_equal_mprnets_2d_kernel_formulation():
    # MPRNet's EdgeLoss: 5×5 outer-product kernel, replicate padding, down = [::2, ::2],
    # up = zero image with 4·down at the even positions, blurred again
    taps = torch.tensor([[0.05, 0.25, 0.4, 0.25, 0.05]])
    kernel = (taps.t() @ taps).expand(3, 1, 5, 5)

    def blur(img):
        return F.conv2d(F.pad(img, (2, 2, 2, 2), mode="replicate"), kernel, groups=3)

    img = images(height=33, width=40)
    filtered = blur(img)
    zero_inserted = torch.zeros_like(filtered)
    zero_inserted[:, :, ::2, ::2] = 4 * filtered[:, :, ::2, ::2]
    expected = img - blur(zero_inserted)
    torch.testing.assert_close(laplacian_edges(img), expected, atol=1e-6, rtol=0)


def test_edge_loss_sees_detail_but_not_a_brightness_offset():
    target = images(height=128, width=128)
    interior = (..., slice(2, -2), slice(2, -2))
    torch.testing.assert_close(
        laplacian_edges(target + 0.1)[interior],
        laplacian_edges(target)[interior],
        atol=1e-6,
        rtol=0,
    )
    generator = torch.Generator().manual_seed(0)
    noisy = target + 0.05 * torch.randn(target.shape, generator=generator)
    assert edge_loss(noisy, target).item() > 5 * edge_loss(target + 0.1, target).item()


def test_mean_ssim_of_identical_images_is_one():
    target = images()
    assert mean_ssim(target, target).item() == pytest.approx(1.0, abs=1e-6)


def test_mean_ssim_matches_skimage_on_float_rgb():
    pred, target = images(batch=1, seed=1), images(batch=1, seed=2)
    expected = structural_similarity(
        pred[0].permute(1, 2, 0).double().numpy(),
        target[0].permute(1, 2, 0).double().numpy(),
        data_range=1.0,
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert mean_ssim(pred, target).item() == pytest.approx(expected, abs=1e-5)


def test_half_resolution_is_bilinear_scale_half_for_even_sizes():
    target = images(height=32, width=48)
    expected = F.interpolate(target, scale_factor=0.5, mode="bilinear", align_corners=False)
    torch.testing.assert_close(half_resolution(target, (16, 24)), expected)


def test_perfect_output_gives_the_floor_of_each_term():
    clean = images()
    out = ELFOutput(image=clean, background_half=half_resolution(clean, (16, 24)))
    loss, terms = ELFLoss()(out, {"rainy": clean, "clean": clean})
    # Charbonnier of a zero difference is eps, at full and (weighted 0.8) half resolution
    assert terms["char"].item() == pytest.approx(1.8 * EPS)
    assert terms["edge"].item() == pytest.approx(1.8 * EPS)
    assert terms["ssim"].item() == pytest.approx(1.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.3 * 1.8 * EPS + 0.2 * 1.8 * EPS - 0.15, abs=1e-6)
    assert set(terms) == {"char", "edge", "ssim"}


def test_loss_combines_the_terms_with_the_given_weights():
    clean, image, background_half = images(seed=0), images(seed=1), images(height=16, width=24)
    out = ELFOutput(image=image, background_half=background_half)
    weights = {"char_weight": 0.7, "edge_weight": 0.5, "ssim_weight": 0.4, "half_weight": 0.25}
    loss, terms = ELFLoss(**weights)(out, {"clean": clean})
    clean_half = half_resolution(clean, (16, 24))
    char = charbonnier(image, clean) + 0.25 * charbonnier(background_half, clean_half)
    edge = edge_loss(image, clean) + 0.25 * edge_loss(background_half, clean_half)
    similarity = mean_ssim(image, clean)
    assert terms["char"].item() == pytest.approx(char.item())
    assert terms["edge"].item() == pytest.approx(edge.item())
    assert terms["ssim"].item() == pytest.approx(similarity.item())
    expected = 0.7 * char + 0.5 * edge - 0.4 * similarity
    assert loss.item() == pytest.approx(expected.item())


def test_half_resolution_terms_are_skipped_without_background_half():
    clean, image = images(seed=0), images(seed=1)
    loss, terms = ELFLoss()(ELFOutput(image=image), {"clean": clean})
    assert terms["char"].item() == pytest.approx(charbonnier(image, clean).item())
    assert terms["edge"].item() == pytest.approx(edge_loss(image, clean).item())


def test_odd_sizes_compare_background_half_with_gt_half_of_its_size():
    # the network's B½ is ⌈H/2⌉×⌈W/2⌉; gt½ is resized to exactly that
    clean = images(height=33, width=47)
    out = ELFOutput(image=clean, background_half=half_resolution(clean, (17, 24)))
    _, terms = ELFLoss()(out, {"clean": clean})
    assert terms["char"].item() == pytest.approx(1.8 * EPS)


def test_rain_term_compares_rain_half_with_the_half_res_true_rain_layer():
    clean, rain = images(seed=0), 0.3 * images(seed=3)
    d = 0.05
    out = ELFOutput(image=clean, rain_half=half_resolution(rain, (16, 24)) + d)
    batch = {"rainy": clean + rain, "clean": clean, "rain": rain}
    without_rain, _ = ELFLoss()(out, batch)
    loss, terms = ELFLoss(rain_weight=0.5)(out, batch)
    assert terms["rain"].item() == pytest.approx(math.sqrt(d**2 + EPS**2))
    assert loss.item() == pytest.approx(without_rain.item() + 0.5 * terms["rain"].item())


def test_rain_term_is_skipped_for_batches_without_a_rain_layer():
    clean = images()
    out = ELFOutput(image=clean, rain_half=half_resolution(clean, (16, 24)))
    _, terms = ELFLoss(rain_weight=0.5)(out, {"clean": clean})
    assert "rain" not in terms


def test_rain_term_without_rain_half_output_names_the_setting():
    clean = images()
    with pytest.raises(ValueError, match="rain_weight=0"):
        ELFLoss(rain_weight=0.5)(ELFOutput(image=clean), {"clean": clean, "rain": clean})


def test_gradients_are_finite_even_for_a_perfect_output():
    # Charbonnier's eps keeps sqrt differentiable at a zero difference; SSIM's C1, C2 keep its
    # denominators positive on flat images
    clean = images(seed=0)
    for start in (images(seed=1), clean.clone()):
        image = start.clone().requires_grad_(True)
        background_half = half_resolution(start, (16, 24)).requires_grad_(True)
        rain_half = torch.zeros(2, 3, 16, 24, requires_grad=True)
        out = ELFOutput(image=image, background_half=background_half, rain_half=rain_half)
        loss, terms = ELFLoss(rain_weight=0.1)(out, {"clean": clean, "rain": 0.2 * clean})
        loss.backward()
        for tensor in (image, background_half, rain_half):
            assert np.isfinite(tensor.grad.numpy()).all()
        assert not any(term.requires_grad for term in terms.values())


def test_gradients_pull_an_imperfect_output_towards_the_target():
    clean, start = images(seed=0), images(seed=1)
    image = start.clone().requires_grad_(True)
    loss, _ = ELFLoss()(ELFOutput(image=image), {"clean": clean})
    loss.backward()
    # the loss is a mean over pixels, so per-pixel gradients are ~1e-4: a step of 100 moves each
    # value by ~1e-2
    with torch.no_grad():
        stepped, _ = ELFLoss()(ELFOutput(image=image - 100 * image.grad), {"clean": clean})
    assert stepped.item() < loss.item() - 0.005


def test_mean_psnr_averages_per_image_psnr_in_db():
    clean = images(batch=2)
    image = clean.clone()
    image[0] += 0.1  # MSE 1e-2 → 20 dB
    image[1] += 0.01  # MSE 1e-4 → 40 dB
    assert mean_psnr(image, clean).item() == pytest.approx(30.0, abs=1e-3)


def test_psnr_term_is_subtracted_with_its_weight_and_reported():
    clean, image = images(seed=0), images(seed=1)
    out = ELFOutput(image=image)
    base, terms = ELFLoss()(out, {"clean": clean})
    loss, terms = ELFLoss(psnr_weight=0.02)(out, {"clean": clean})
    assert terms["psnr"].item() == pytest.approx(mean_psnr(image, clean).item())
    assert loss.item() == pytest.approx(base.item() - 0.02 * terms["psnr"].item(), rel=1e-5)
    assert "psnr" not in ELFLoss()(out, {"clean": clean})[1]


def test_psnr_term_weights_each_image_by_its_inverse_error():
    # the same absolute error costs far more gradient on an image that is already close
    clean = images(batch=2)
    offsets = torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)
    image = (clean + offsets).requires_grad_(True)
    (-mean_psnr(image, clean)).backward()
    per_image = image.grad.abs().flatten(1).mean(dim=1)
    # d(−PSNR)/d(out) ∝ (out − gt) / MSE ∝ 1 / offset
    assert (per_image[1] / per_image[0]).item() == pytest.approx(10.0, rel=1e-3)


def photo_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """(rainy, clean): 4×3×96×96 crops of bundled photos with light synthetic rain."""
    from derain.data.photos import crop_around, fit_longest_side, load_photo
    from derain.data.synthetic import SyntheticRain

    rainy, clean = [], []
    for key, name in enumerate(("coffee", "chelsea", "astronaut", "rocket")):
        photo = crop_around(fit_longest_side(load_photo(name), 160), 60, 80, 96)
        sample = SyntheticRain("light", seed=0)(photo, key)
        rainy.append(torch.from_numpy(np.ascontiguousarray(sample.rainy)).permute(2, 0, 1))
        clean.append(torch.from_numpy(np.ascontiguousarray(sample.clean)).permute(2, 0, 1))
    return torch.stack(rainy), torch.stack(clean)


def _loss_and_gradient(rainy, clean, autocast: bool):
    image = rainy.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = ELFOutput(image=image, background_half=half_resolution(image, (48, 48)))
        loss, terms = ELFLoss()(out, {"clean": clean})
        per_image_ssim = torch.stack([mean_ssim(image[i, None], clean[i, None]) for i in range(4)])
    loss.backward()
    return loss.detach(), terms, per_image_ssim.detach(), image.grad.flatten()


def test_loss_under_bf16_autocast_is_the_fp32_loss_on_photos():
    # bf16-mixed training runs the loss inside autocast, which would compute the SSIM window
    # and the edge blur in bf16 (negative variances, a gradient pointing elsewhere)
    rainy, clean = photo_pairs()
    loss32, _, ssim32, grad32 = _loss_and_gradient(rainy, clean, autocast=False)
    loss16, terms16, ssim16, grad16 = _loss_and_gradient(rainy, clean, autocast=True)
    assert ssim32.min() > 0.6 and ssim32.max() < 0.95  # real, imperfect pairs
    assert (ssim16 - ssim32).abs().max().item() < 1e-3
    assert loss16.dtype == torch.float32 and terms16["ssim"].dtype == torch.float32
    assert abs(loss16.item() - loss32.item()) < 1e-4
    assert F.cosine_similarity(grad16, grad32, dim=0).item() >= 0.99
    assert grad16.norm().item() == pytest.approx(grad32.norm().item(), rel=1e-2)


def test_loss_of_a_bf16_network_output_is_computed_in_fp32():
    rainy, clean = photo_pairs()
    image = rainy.to(torch.bfloat16)  # what the network returns under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        similarity = mean_ssim(image, clean)
        edges = laplacian_edges(image)
    assert similarity.dtype == edges.dtype == torch.float32
    assert similarity.item() == pytest.approx(mean_ssim(image.float(), clean).item(), abs=1e-6)

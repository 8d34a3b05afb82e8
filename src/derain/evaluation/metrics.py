"""The deraining papers' evaluation protocol (their MATLAB script) on batched tensors.

Every number in the literature's tables is the Y-channel PSNR/SSIM of one MATLAB script: 8-bit
images, BT.601 *studio-range* luma rounded to an integer, PSNR with peak 255 and no border crop,
Wang et al.'s SSIM with an 11×11 Gaussian (σ = 1.5) over the *valid* region only, and a data set's
figure is the mean of its per-image values. This module reproduces it exactly (the tests hold it to
scikit-image within 1e-3 dB / 1e-4 SSIM); see docs/protocol.md.

Variants are options, not defaults:
- ``rounded_y=False`` keeps Y unrounded, as BasicSR does (≈0.04 dB higher at 35 dB, ≈0.5 dB at 47).
- ``channel="rgb"`` scores the three 8-bit channels. DID-Data/DDN-Data papers report PSNR with peak
  1.0 on im2double RGB — the same number as ``psnr(..., channel="rgb")`` — and SSIM on Y·255 of
  double images, i.e. ``ssim(..., rounded_y=False)``.

SSIM is kornia's (``kornia.metrics.ssim`` with valid padding equals the MATLAB script). The Y plane
is ours: kornia's ``rgb_to_y`` is *full-range* luma (0.299, 0.587, 0.114), which scored with peak
255 reads 20·log10(255/219) ≈ 1.32 dB lower than the rounded studio-range Y every paper uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar

import kornia
import torch
from torch import Tensor
from torchmetrics import Metric

Channel = Literal["y", "rgb"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

PEAK = 255.0
SSIM_WINDOW_SIZE = 11

# BT.601 studio-range luma of MATLAB's rgb2ycbcr, in thousandths so 8-bit inputs stay integers:
# Y = 16 + (65.481·R + 128.553·G + 24.966·B) / 255.
_Y_WEIGHTS_MILLI = (65481, 128553, 24966)
_Y_DIVISOR_MILLI = 255 * 1000
_Y_OFFSET = 16


def full_precision(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Runs `fn` outside autocast, with its bf16/fp16 tensor arguments cast to float32.

    Training under `bf16-mixed` runs the loss inside autocast, which computes convolutions (the
    SSIM window, the edge blur) in bf16: SSIM's variance E[x²] − μ² then loses nearly every digit
    and turns negative on real photos. Scores and losses must not depend on the training
    precision, so every function of images here and in `derain.training.losses` goes through this.
    float64 arguments (the metrics' planes) are left as they are.
    """

    def to_float32(value):
        if isinstance(value, Tensor) and value.dtype in (torch.float16, torch.bfloat16):
            return value.float()
        return value

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        if not torch.amp.is_autocast_available(device_type):
            return fn(*map(to_float32, args), **{k: to_float32(v) for k, v in kwargs.items()})
        with torch.autocast(device_type, enabled=False):
            return fn(*map(to_float32, args), **{k: to_float32(v) for k, v in kwargs.items()})

    return wrapper


def _check_images(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}: crop or pad the result back to the ground truth's size"
        )
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(
            f"expected batched RGB images B×3×H×W, got shape {tuple(pred.shape)}: "
            "add a batch dimension with img[None] / expand grey images to 3 channels"
        )


def quantize_8bit(img: Tensor) -> Tensor:
    """What the papers' script sees when it reads the saved 8-bit file.

    Rounds exactly as `derain.data.io.write_image` does (clip, ·255 in the image's precision —
    float32 at least — then round half to even), so scoring a tensor gives the score of the file
    it would be saved as.

    Args:
        img: float image of any shape, values nominally in [0, 1].

    Returns:
        float64 tensor of integers in [0, 255]: round(clip(img, 0, 1) · 255).
    """
    if not img.is_floating_point():
        raise TypeError(
            f"expected a float image in [0, 1], got {img.dtype}: divide 8-bit images by 255 first"
        )
    img = img.detach().to(torch.promote_types(img.dtype, torch.float32))
    return torch.round(img.clamp(0.0, 1.0) * PEAK).to(torch.float64)


def rgb_to_y(img: Tensor, rounded: bool = True) -> Tensor:
    """BT.601 studio-range luma of 8-bit RGB, as MATLAB's ``rgb2ycbcr`` on uint8 images.

    Args:
        img: B×3×H×W float RGB in [0, 1]; quantised to 8 bit first (see `quantize_8bit`).
        rounded: round Y to an integer, as ``rgb2ycbcr`` does for uint8 input (the papers'
            default). False keeps the exact value (BasicSR's convention).

    Returns:
        B×1×H×W float64 Y in [16, 235] (on the 0–255 scale). Computed in integer arithmetic, so
        rounding is exact; the 194 ties among the 2^24 colours round half up, MATLAB's rule
        (its floating-point arithmetic may tip some of them either way).
    """
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"expected batched RGB images B×3×H×W, got shape {tuple(img.shape)}")
    rgb = quantize_8bit(img).to(torch.int64)
    weights = torch.tensor(_Y_WEIGHTS_MILLI, dtype=torch.int64, device=img.device)
    luma_milli = (rgb * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    if rounded:
        luma = torch.div(
            luma_milli + _Y_DIVISOR_MILLI // 2, _Y_DIVISOR_MILLI, rounding_mode="floor"
        )
        return (luma + _Y_OFFSET).to(torch.float64)
    return luma_milli.to(torch.float64) / _Y_DIVISOR_MILLI + _Y_OFFSET


def _scored_planes(img: Tensor, channel: Channel, rounded_y: bool) -> Tensor:
    """B×C×H×W float64 on the 0–255 scale: the Y plane (C = 1) or the 8-bit RGB channels."""
    if channel == "y":
        return rgb_to_y(img, rounded=rounded_y)
    if channel == "rgb":
        return quantize_8bit(img)
    raise ValueError(f"channel must be 'y' or 'rgb', got {channel!r}")


@full_precision
def psnr(pred: Tensor, target: Tensor, channel: Channel = "y", rounded_y: bool = True) -> Tensor:
    """Per-image PSNR of the papers' protocol: peak 255, no border crop.

    Args:
        pred, target: B×3×H×W float RGB in [0, 1].
        channel: "y" (studio-range luma, the papers' default) or "rgb" (squared error pooled over
            the three channels).
        rounded_y: round Y to an integer (ignored for "rgb").

    Returns:
        float64 tensor of shape B, in dB. Identical images give +inf, as the papers' script and
        scikit-image do; a mean that includes one is inf too.
    """
    _check_images(pred, target)
    diff = _scored_planes(pred, channel, rounded_y) - _scored_planes(target, channel, rounded_y)
    mse = diff.square().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(PEAK**2 / mse)


@full_precision
def structural_similarity(
    x: Tensor, y: Tensor, data_range: float, window_size: int = SSIM_WINDOW_SIZE
) -> Tensor:
    """Wang et al. (2004) SSIM with an 11×11 Gaussian window (σ = 1.5, kornia's) over the valid
    region, per image; K1 = 0.01, K2 = 0.03, population variances, as in the MATLAB reference.

    Differentiable and computed in the inputs' dtype, so the loss reuses it; the metric calls it on
    float64 planes.

    Args:
        x, y: B×C×H×W float tensors of the same shape, H and W at least `window_size`.
        data_range: L, the span of the values (255 for 8-bit planes, 1 for [0, 1] images).

    Returns:
        tensor of shape B: the mean of the (H−window_size+1)×(W−window_size+1) SSIM map over its
        pixels and over the C channels (= the mean of the per-channel SSIMs).
    """
    if x.shape[-2] < window_size or x.shape[-1] < window_size:
        raise ValueError(
            f"SSIM needs images of at least {window_size}×{window_size} pixels (its valid window), "
            f"got {x.shape[-2]}×{x.shape[-1]}"
        )
    ssim_map = kornia.metrics.ssim(x, y, window_size, max_val=data_range, padding="valid")
    return ssim_map.mean(dim=(1, 2, 3))


@full_precision
def ssim(pred: Tensor, target: Tensor, channel: Channel = "y", rounded_y: bool = True) -> Tensor:
    """Per-image SSIM of the papers' protocol on the 8-bit Y plane (or RGB channels), L = 255.

    11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, valid borders (the map is
    (H−10)×(W−10)), mean of the map; for "rgb" the mean of the three per-channel SSIMs.

    Args:
        pred, target: B×3×H×W float RGB in [0, 1], H and W at least 11.
        channel: "y" (papers' default) or "rgb".
        rounded_y: round Y to an integer (ignored for "rgb").

    Returns:
        float64 tensor of shape B, at most 1 (1 for identical images).
    """
    _check_images(pred, target)
    return structural_similarity(
        _scored_planes(pred, channel, rounded_y),
        _scored_planes(target, channel, rounded_y),
        data_range=PEAK,
    )


class _PerImageMean(Metric):
    """Mean over images of a per-image score; sums and counts reduce by "sum" across processes."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, channel: Channel = "y", rounded_y: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if channel not in ("y", "rgb"):
            raise ValueError(f"channel must be 'y' or 'rgb', got {channel!r}")
        self.channel = channel
        self.rounded_y = rounded_y
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def _score(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the per-image scores of a batch; pred/target are B×3×H×W float RGB in [0, 1]."""
        scores = self._score(pred, target)
        # keep float64 even if the module was cast with .float() / .half()
        self.total = self.total + scores.sum().to(self.total.device, torch.float64)
        self.count = self.count + scores.numel()

    def compute(self) -> Tensor:
        """Mean of the per-image scores seen since the last reset (float64 scalar)."""
        return self.total.to(torch.float64) / self.count


class PSNR(_PerImageMean):
    """Mean per-image PSNR of the papers' protocol (see `psnr`): Y channel, rounded, peak 255.

    Unlike torchmetrics' PeakSignalNoiseRatio, which pools the squared error of every pixel seen,
    this averages the per-image dB values — the number the papers' tables report.
    """

    def _score(self, pred: Tensor, target: Tensor) -> Tensor:
        return psnr(pred, target, channel=self.channel, rounded_y=self.rounded_y)


class SSIM(_PerImageMean):
    """Mean per-image SSIM of the papers' protocol (see `ssim`): Y channel, valid 11×11 Gaussian.

    Unlike torchmetrics' StructuralSimilarityIndexMeasure, the window does not run over padded
    borders.
    """

    def _score(self, pred: Tensor, target: Tensor) -> Tensor:
        return ssim(pred, target, channel=self.channel, rounded_y=self.rounded_y)

"""The ELF paper's training loss: Charbonnier + Laplacian-edge Charbonnier − SSIM, full and half res.

loss = char_weight·char + edge_weight·edge − ssim_weight·SSIM(out, gt) [+ rain_weight·rain], with

- char = Charbonnier(out, gt) + half_weight·Charbonnier(B½, gt½)
- edge = Charbonnier(edges(out), edges(gt)) + half_weight·Charbonnier(edges(B½), edges(gt½))
- rain (beyond the paper, for data sets that carry the rain layer) = Charbonnier(R½, rain½)

where gt½ / rain½ are bilinear halves of the full-res targets. Paper weights: 0.3, 0.2, 0.15, 0.8.
All images are B×3×H×W float tensors in [0, 1]. Every term is computed in float32 outside
autocast (`derain.evaluation.metrics.full_precision`), so bf16/fp16 training optimises the same loss.
"""

from __future__ import annotations

from typing import Protocol

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derain.evaluation.metrics import full_precision, structural_similarity

# MPRNet's 5-tap binomial-like Gaussian, applied along rows then columns
_EDGE_TAPS = (0.05, 0.25, 0.4, 0.25, 0.05)


@full_precision
def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier (smooth L1) loss: mean(sqrt((pred − target)² + eps²)), a scalar ≥ eps."""
    return torch.sqrt((pred - target).square() + eps**2).mean()


def _blur5(img: Tensor) -> Tensor:
    """Separable 5×5 Gaussian per channel with 2-px replicate padding; keeps B×C×H×W."""
    taps = torch.tensor([_EDGE_TAPS], dtype=img.dtype, device=img.device)
    return kornia.filters.filter2d_separable(img, taps, taps, border_type="replicate")


@full_precision
def laplacian_edges(img: Tensor) -> Tensor:
    """One Laplacian-pyramid level: img − blur(up(down(blur(img)))), as MPRNet's EdgeLoss.

    By hand because MPRNet's up-sampling inserts zeros (×4) where kornia's pyramids interpolate;
    the blurs are kornia's separable filter.

    blur: the 5-tap Gaussian [.05, .25, .4, .25, .05] along rows and columns (= the 5×5 outer
    product) per channel, on a 2-px replicate-padded image, so the size is kept. down: keep the
    pixels at even row and column indices. up: put those values ×4 back at the even positions of a
    zero image of the original size (the ×4 restores the mean of the 1-in-4 samples), then blur.

    Args:
        img: B×C×H×W float tensor.

    Returns:
        B×C×H×W band-pass image; zero on constant regions away from the two-pixel border, where
        the zero-inserted image is replicated unevenly.
    """
    blurred = _blur5(img)
    upsampled = torch.zeros_like(blurred)
    upsampled[..., ::2, ::2] = 4 * blurred[..., ::2, ::2]
    return img - _blur5(upsampled)


@full_precision
def edge_loss(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier loss between the `laplacian_edges` of pred and target (B×C×H×W), a scalar."""
    return charbonnier(laplacian_edges(pred), laplacian_edges(target), eps=eps)


@full_precision
def mean_ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Differentiable SSIM of RGB images in [0, 1] (data range 1), averaged over the batch.

    Same window as the evaluation (11×11 Gaussian, σ = 1.5, valid borders) but on the float RGB
    channels, without 8-bit quantisation. Inputs B×3×H×W with H, W ≥ 11; returns a scalar ≤ 1.
    """
    return structural_similarity(pred, target, data_range=1.0).mean()


@full_precision
def mean_psnr(pred: Tensor, target: Tensor, eps: float = 1e-10) -> Tensor:
    """Differentiable PSNR in dB of images in [0, 1] (peak 1), per image then averaged over the
    batch: mean_i 10·log10(1 / (MSE_i + eps)). Inputs B×C×H×W; returns a scalar.

    As a loss (minimise −PSNR) each image's squared error is weighted by 1/MSE_i, so images that
    are already close (light rain) count as much as those far off (heavy rain), as they do in a
    mean of per-image PSNRs.
    """
    mse = (pred - target).square().flatten(1).mean(dim=1)
    return (-10.0 * torch.log10(mse + eps)).mean()


@full_precision
def half_resolution(img: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear downsampling of B×C×H×W to B×C×size (no antialiasing, align_corners=False).

    For even H, W and size = (H/2, W/2) this is F.interpolate(img, scale_factor=0.5, ...) exactly.
    """
    return F.interpolate(img, size=tuple(size), mode="bilinear", align_corners=False)


class NetworkOutput(Protocol):
    """What `ELFLoss` reads from the network's output (B×3×… float tensors)."""

    image: Tensor
    background_half: Tensor | None
    rain_half: Tensor | None
    rain: Tensor | None


class ELFLoss(nn.Module):
    """The ELF paper's loss; weights are constructor arguments so ablations are config switches.

    Args:
        char_weight: weight of the Charbonnier term (paper: 0.3).
        edge_weight: weight of the Laplacian-edge Charbonnier term (paper: 0.2).
        ssim_weight: weight of SSIM(out, gt), *subtracted* (paper: 0.15).
        half_weight: weight of the half-res B½ terms inside char and edge (paper: 0.8).
        rain_weight: weight of Charbonnier(R½, rain½) against the true rain layer; 0 (paper)
            turns it off. Applied only to batches that carry "rain".
        eps: Charbonnier ε (paper: 1e-3).
    """

    def __init__(
        self,
        char_weight: float = 0.3,
        edge_weight: float = 0.2,
        ssim_weight: float = 0.15,
        half_weight: float = 0.8,
        rain_weight: float = 0.0,
        psnr_weight: float = 0.0,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.char_weight = char_weight
        self.edge_weight = edge_weight
        self.ssim_weight = ssim_weight
        self.half_weight = half_weight
        self.rain_weight = rain_weight
        self.psnr_weight = psnr_weight
        self.eps = eps

    def forward(
        self, out: NetworkOutput, batch: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of one batch.

        Args:
            out: network output with `image` (B×3×H×W), `background_half` (B×3×h×w or None, then
                the half-res terms are skipped) and `rain_half` (B×3×h×w or None).
            batch: dict with "clean" (B×3×H×W target) and optionally "rain" (B×3×H×W true rain
                layer); other keys are ignored.

        Returns:
            (scalar loss to minimise, {"char", "edge", "ssim"[, "rain"]: detached scalar terms,
            before weighting}).
        """
        clean = batch["clean"]
        char = charbonnier(out.image, clean, self.eps)
        edge = edge_loss(out.image, clean, self.eps)
        if out.background_half is not None:
            clean_half = half_resolution(clean, out.background_half.shape[-2:])
            char = char + self.half_weight * charbonnier(out.background_half, clean_half, self.eps)
            edge = edge + self.half_weight * edge_loss(out.background_half, clean_half, self.eps)
        similarity = mean_ssim(out.image, clean)

        loss = self.char_weight * char + self.edge_weight * edge - self.ssim_weight * similarity
        terms = {"char": char.detach(), "edge": edge.detach(), "ssim": similarity.detach()}
        if self.psnr_weight > 0:
            psnr = mean_psnr(out.image, clean)
            loss = loss - self.psnr_weight * psnr
            terms["psnr"] = psnr.detach()

        if self.rain_weight > 0 and "rain" in batch:
            if out.rain_half is None:
                raise ValueError(
                    f"ELFLoss(rain_weight={self.rain_weight}) needs the network's rain_half output, "
                    "but it is None: use a model that predicts R½ or set the loss's rain_weight=0"
                )
            rain_half = half_resolution(batch["rain"], out.rain_half.shape[-2:])
            rain = charbonnier(out.rain_half, rain_half, self.eps)
            loss = loss + self.rain_weight * rain
            terms["rain"] = rain.detach()
        return loss, terms

"""The ELF association network: a rain-distribution subnet guides a background-recovery subnet.

    x ──► RainDistributionNet (½ res) ──► R½, B½ = x½ − R½
    x, R½, B½ ──► BackgroundRecoveryNet (MAM: rain features query image features) ──► image

Both subnets associate a transformer branch with a convolution U-Net branch (`AssociationStage`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derain.models.blocks import (
    CAB,
    AssociationStage,
    CrossTransformerBlock,
    Fuse2,
    TransformerBlock,
    conv3x3,
    resize,
)

Head = Literal["background", "rain"]


class ELFOutput(NamedTuple):
    """What the network returns; every tensor has the input's batch size and is in image units.

    image: restored image, B×3×H×W.
    background_half: coarse background B½, B×3×⌈H/2⌉×⌈W/2⌉ (None without the rain prior).
    rain_half: rain layer R½ at half resolution (None without the rain prior).
    rain: full-resolution rain layer, B×3×H×W (only with the rain head).
    """

    image: Tensor
    background_half: Tensor | None = None
    rain_half: Tensor | None = None
    rain: Tensor | None = None


def quadrants_to_channels(x: Tensor) -> Tensor:
    """B×C×H×W → B×4C×H/2×W/2: the four quadrants (TL, TR, BL, BR) stacked on channels."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    return torch.cat((x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]), dim=1)


class RainDistributionNet(nn.Module):
    """DSNet: predicts the rain layer R½ and a coarse background B½ = x½ − R½ at half resolution."""

    def __init__(
        self, width: int, depth: int, heads: int, attention: bool, conv_branch: bool
    ) -> None:
        super().__init__()
        self.embed_half = nn.Sequential(conv3x3(3, width), CAB(width))
        self.embed_quadrants = nn.Sequential(
            conv3x3(12, width), CAB(width), TransformerBlock(width, heads=1)
        )
        self.merge = conv3x3(2 * width, width)
        self.stage = AssociationStage(width, depth, heads, attention, conv_branch)
        self.to_rain = conv3x3(width, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_half = resize(x, 0.5)
        a = self.embed_half(x_half)
        b = self.embed_quadrants(quadrants_to_channels(x))
        rain_half = self.to_rain(self.stage(self.merge(torch.cat((a, b), dim=1))))
        return rain_half, x_half - rain_half


class MultiInputAttention(nn.Module):
    """MAM: rain features query the rainy-image features (cross channel attention), then the
    coarse background is fused in. Without `cross_attention` the two inputs are concatenated and
    mixed by a 3×3 conv instead (the "no MAM" ablation)."""

    def __init__(self, width: int, heads: int, cross_attention: bool = True) -> None:
        super().__init__()
        self.embed_rain = conv3x3(3, width)
        self.embed_background = conv3x3(3, width)
        if cross_attention:
            self.cross = CrossTransformerBlock(width, heads)
            self.concat_mix = None
        else:
            self.cross = None
            self.concat_mix = conv3x3(2 * width, width)
        self.fuse = Fuse2(width)

    def forward(self, image_features: Tensor, rain_half: Tensor, background_half: Tensor) -> Tensor:
        r = self.embed_rain(rain_half)
        if self.cross is not None:
            attended = self.cross(r, image_features, image_features)
        else:
            attended = self.concat_mix(torch.cat((r, image_features), dim=1))
        return self.fuse(self.embed_background(background_half), attended)


class BackgroundRecoveryNet(nn.Module):
    """SSNet: recovers the full-resolution background, guided by the rain prior when given."""

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        mam_heads: int,
        attention: bool,
        conv_branch: bool,
        rain_prior: bool,
        cross_attention: bool,
    ) -> None:
        super().__init__()
        self.embed_image = conv3x3(3, width, stride=2)
        self.mam = MultiInputAttention(width, mam_heads, cross_attention) if rain_prior else None
        self.stage = AssociationStage(width, depth, heads, attention, conv_branch)
        self.refine = TransformerBlock(width, heads=1)
        self.reconstruct = nn.Sequential(
            conv3x3(width, 2 * width), nn.PixelShuffle(2), conv3x3(width // 2, 3)
        )

    def forward(
        self, x: Tensor, rain_half: Tensor | None = None, background_half: Tensor | None = None
    ) -> Tensor:
        """Returns the full-resolution residual the head adds to its base image (B×3×H×W)."""
        features = self.embed_image(x)
        if self.mam is not None:
            features = self.mam(features, rain_half, background_half)
        return self.reconstruct(self.refine(self.stage(features)))


class ELF(nn.Module):
    """The ELF association network for single-image deraining.

    Args:
        width: feature channels n (48 in the paper).
        depth: transformer blocks k in each transformer branch (paper 10, later default 5).
        heads: attention heads of the transformer branches.
        mam_heads: attention heads of the multi-input attention module's cross attention.
        attention: False replaces the transformer branches by CAB stacks of similar cost.
        conv_branch: False removes the convolution U-Net branches.
        cross_attention: False replaces the MAM's cross attention by concatenation + conv.
        rain_prior: False removes the rain-distribution subnet (single-stage network).
        head: "background" adds the reconstruction to the upsampled B½; "rain" predicts the
            full-resolution rain layer R and returns x − R.
        multiple: inputs are padded to this multiple (16 is what the three U-Net levels under a
            half-resolution stem need) and outputs cropped back.

    Input: B×3×H×W RGB in [0,1], any H, W ≥ 1. Output: `ELFOutput`.
    """

    def __init__(
        self,
        width: int = 48,
        depth: int = 10,
        heads: int = 2,
        mam_heads: int = 4,
        attention: bool = True,
        conv_branch: bool = True,
        cross_attention: bool = True,
        rain_prior: bool = True,
        head: Head = "background",
        multiple: int = 16,
    ) -> None:
        super().__init__()
        if head not in ("background", "rain"):
            raise ValueError(f"head must be 'background' or 'rain', got {head!r}")
        if width % 2:
            raise ValueError(f"width must be even (pixel shuffle halves it), got {width}")
        self.head = head
        self.multiple = multiple
        self.rain_net = (
            RainDistributionNet(width, depth, heads, attention, conv_branch) if rain_prior else None
        )
        self.recovery_net = BackgroundRecoveryNet(
            width, depth, heads, mam_heads, attention, conv_branch, rain_prior, cross_attention
        )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ELF:
        """Builds a named preset (see `derain.models.presets.PRESETS`), with optional overrides."""
        from derain.models.presets import preset_arguments

        return cls(**{**preset_arguments(name), **overrides})

    def forward(self, x: Tensor) -> ELFOutput:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"ELF expects a batch of RGB images shaped B×3×H×W, got shape {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, self.multiple)
        out = self._forward_padded(padded)
        hh, wh = (h + 1) // 2, (w + 1) // 2
        return ELFOutput(
            image=out.image[..., :h, :w],
            background_half=_crop(out.background_half, hh, wh),
            rain_half=_crop(out.rain_half, hh, wh),
            rain=_crop(out.rain, h, w),
        )

    def _forward_padded(self, x: Tensor) -> ELFOutput:
        rain_half = background_half = None
        if self.rain_net is not None:
            rain_half, background_half = self.rain_net(x)
        residual = self.recovery_net(x, rain_half, background_half)
        if self.head == "rain":
            return ELFOutput(x - residual, background_half, rain_half, residual)
        base = resize(background_half, 2) if background_half is not None else x
        return ELFOutput(base + residual, background_half, rain_half, None)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pads B×C×H×W at the bottom/right to multiples of `multiple`: reflect where the image is
    large enough for it, replicate otherwise."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _crop(t: Tensor | None, h: int, w: int) -> Tensor | None:
    return None if t is None else t[..., :h, :w]

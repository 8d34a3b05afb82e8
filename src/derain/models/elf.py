"""The ELF association network: a rain-distribution subnet guides a background-recovery subnet.

    x ──► RainDistributionNet (½ res) ──► R½, B½ = x½ − R½
    x, R½, B½ ──► BackgroundRecoveryNet (MAM: rain features query image features) ──► t
    image = x − (up(R½) + t)        (the paper's head, "refined_rain": t refines the rain prior)

Both subnets associate a transformer branch with a convolution U-Net branch (`AssociationStage`).
Weights of the authors' published network load with `derain.models.from_authors`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

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

Head = Literal["refined_rain", "background", "rain"]
HEADS: tuple[str, ...] = get_args(Head)


class ELFOutput(NamedTuple):
    """What the network returns; every tensor has the input's batch size and is in image units.

    image: restored image, B×3×H×W.
    background_half: coarse background B½, B×3×⌈H/2⌉×⌈W/2⌉ (None without the rain prior).
    rain_half: rain layer R½ at half resolution (None without the rain prior).
    rain: full-resolution rain layer, B×3×H×W, with image = x − rain (the "refined_rain" and
        "rain" heads; None with the "background" head).
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
    """DSNet: predicts the rain layer R½ and a coarse background B½ = x½ − R½ at half resolution.

    All its CABs (two here, six in the convolution branch) share one PReLU.
    """

    def __init__(
        self, width: int, depth: int, heads: int, attention: bool, conv_branch: bool
    ) -> None:
        super().__init__()
        act = nn.PReLU()
        self.embed_half = nn.Sequential(conv3x3(3, width), CAB(width, act))
        self.embed_quadrants = nn.Sequential(
            conv3x3(12, width), CAB(width, act), TransformerBlock(width, heads=1)
        )
        self.merge = conv3x3(2 * width, width)
        self.stage = AssociationStage(width, depth, heads, attention, conv_branch, act)
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
    """SSNet: from the rainy image, guided by the rain prior when given, a full-resolution residual.

    MAM (or the image features alone) → a single-head transformer block → association stage →
    conv to 2n channels → pixel shuffle ×2 → conv to 3 channels. The six CABs of its convolution
    branch share one PReLU.
    """

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
        self.refine = TransformerBlock(width, heads=1)
        self.stage = AssociationStage(width, depth, heads, attention, conv_branch, nn.PReLU())
        self.reconstruct = nn.Sequential(
            conv3x3(width, 2 * width), nn.PixelShuffle(2), conv3x3(width // 2, 3)
        )

    def forward(
        self, x: Tensor, rain_half: Tensor | None = None, background_half: Tensor | None = None
    ) -> Tensor:
        """Returns the full-resolution residual t the head combines with its base (B×3×H×W)."""
        features = self.embed_image(x)
        if self.mam is not None:
            features = self.mam(features, rain_half, background_half)
        return self.reconstruct(self.stage(self.refine(features)))


class ELF(nn.Module):
    """The ELF association network for single-image deraining.

    Args:
        width: feature channels n (48 in the paper).
        depth: transformer blocks k in each transformer branch (paper 10, later default 5).
        heads: attention heads of the transformer branches.
        mam_heads: attention heads of the multi-input attention module's cross attention (1 in
            the paper).
        attention: False replaces the transformer branches by CAB stacks of similar cost.
        conv_branch: False removes the convolution U-Net branches.
        cross_attention: False replaces the MAM's cross attention by concatenation + conv.
        rain_prior: False removes the rain-distribution subnet (single-stage network).
        head: how the recovery subnet's residual t becomes the image; all three have the same
            parameters.
            "refined_rain" (the paper's): t refines the upsampled rain prior into a
            full-resolution rain layer R = up(R½) + t, and the image is x − R; rain-free
            detail passes through unchanged.
            "background" (beyond the paper): the image is up(B½) + t, so t must also restore
            the detail that halving removed.
            "rain" (beyond the paper): t alone is the rain layer, image x − t (R½ only guides).
            Without the rain prior, "refined_rain" and "background" become x − t and x + t.
        multiple: inputs are padded to this multiple (16 is what the three U-Net levels under a
            half-resolution stem need) and outputs cropped back.
        channels_last: run the feature maps in channels-last memory order (faster on CPU, and
            on GPU tensor cores); inputs may come in either order, outputs are contiguous.
            Changes speed only: parameters, checkpoints and results (to float rounding) are the
            same either way.
        compile: compile the network's transformer blocks with `torch.compile` (see
            `compile_blocks`; for inference-only use, `optimize(model, compile=True,
            freeze=True)` is faster on CPU).

    Input: B×3×H×W RGB in [0,1], any H, W ≥ 1. Output: `ELFOutput`.
    """

    def __init__(
        self,
        width: int = 48,
        depth: int = 10,
        heads: int = 2,
        mam_heads: int = 1,
        attention: bool = True,
        conv_branch: bool = True,
        cross_attention: bool = True,
        rain_prior: bool = True,
        head: Head = "refined_rain",
        multiple: int = 16,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if width % 2:
            raise ValueError(f"width must be even (pixel shuffle halves it), got {width}")
        self.head = head
        self.multiple = multiple
        self.channels_last = channels_last
        self.rain_net = (
            RainDistributionNet(width, depth, heads, attention, conv_branch) if rain_prior else None
        )
        self.recovery_net = BackgroundRecoveryNet(
            width, depth, heads, mam_heads, attention, conv_branch, rain_prior, cross_attention
        )
        if compile:
            compile_blocks(self)

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
        if self.channels_last:
            padded = padded.contiguous(memory_format=torch.channels_last)
        out = self.forward_padded(padded)
        hh, wh = (h + 1) // 2, (w + 1) // 2
        return ELFOutput(
            image=_crop(out.image, h, w),
            background_half=_crop(out.background_half, hh, wh),
            rain_half=_crop(out.rain_half, hh, wh),
            rain=_crop(out.rain, h, w),
        )

    def forward_padded(self, x: Tensor) -> ELFOutput:
        """The network on B×3×H×W whose H and W are multiples of `multiple` (`forward` pads to
        them, runs this and crops; an exporter pads in its own graph, see `padding`)."""
        rain_half = background_half = None
        if self.rain_net is not None:
            rain_half, background_half = self.rain_net(x)
        residual = self.recovery_net(x, rain_half, background_half)
        if self.head == "background":
            base = x if background_half is None else resize(background_half, 2)
            return ELFOutput(base + residual, background_half, rain_half, None)
        rain = residual
        if self.head == "refined_rain" and rain_half is not None:
            rain = resize(rain_half, 2) + residual
        return ELFOutput(x - rain, background_half, rain_half, rain)


COMPILED_BLOCKS = (TransformerBlock, CrossTransformerBlock)
"""What `compile_blocks` compiles: the transformer blocks, most of the network's time."""


def compile_blocks(model: nn.Module, freeze: bool = False) -> nn.Module:
    """Compiles each of `model`'s `COMPILED_BLOCKS` with `torch.compile`, in place (parameter
    names and checkpoints stay the same), and returns `model`.

    Compiling block by block ("regional compilation") compiles one block type once for all its
    copies, at the one resolution they all run at (68–88 s per size and mode for `elf` on one
    CPU core). Each new input size or train/eval mode compiles again (static shapes: the
    dynamic-shape graphs of this PyTorch fail to build for the attention).

    `freeze=True` (inference only) lets the compiler treat the weights as constants and pre-pack
    them, which is what makes compiling pay at all on CPU (9% faster than eager at 256² in
    `make bench`; unfrozen, it is no faster for training). It sets
    `torch._inductor.config.freezing` for the whole process and compiles every block separately;
    weights changed afterwards are not seen, so never in a process that trains.
    """
    blocks = _outermost(model, COMPILED_BLOCKS)
    if freeze:
        import torch._dynamo.config as dynamo_config
        import torch._inductor.config as inductor_config

        # read while tracing, not per compile: `torch.compile(options=...)` does not reach it
        inductor_config.freezing = True
        # frozen weights are part of each block's code: one compilation per block
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 2 * len(blocks))
    for block in blocks:
        block.compile(dynamic=False)
    return model


def _outermost(model: nn.Module, types: tuple[type, ...]) -> list[nn.Module]:
    """Submodules of `types` that are not inside another one."""
    if isinstance(model, types):
        return [model]
    return [m for child in model.children() for m in _outermost(child, types)]


def optimize(
    model: ELF, *, channels_last: bool | None = None, compile: bool = False, freeze: bool = False
) -> ELF:
    """Sets the speed switches of a built network (one loaded from a checkpoint, say) and
    returns it: `channels_last` (None keeps the model's setting); `compile` compiles its blocks,
    with `freeze` for inference-only use (see `compile_blocks`). Results stay the same."""
    if channels_last is not None:
        model.channels_last = channels_last
    if compile:
        compile_blocks(model, freeze)
    return model


def padding(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Rows and columns to add at the bottom and right to reach multiples of `multiple`.

    Plain arithmetic, no branches: traced for export, the amounts stay symbolic in the graph.
    """
    return (multiple - height % multiple) % multiple, (multiple - width % multiple) % multiple


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pads B×C×H×W at the bottom/right to multiples of `multiple` (`padding`): reflect where
    the image is large enough for it, replicate otherwise."""
    h, w = x.shape[-2:]
    pad_h, pad_w = padding(h, w, multiple)
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _crop(t: Tensor | None, h: int, w: int) -> Tensor | None:
    """The top-left h×w of `t`, contiguous (callers may `.view` it whatever the network's layout)."""
    return None if t is None else t[..., :h, :w].contiguous()

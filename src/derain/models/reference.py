"""The straightforward ELF: each block written as the specification reads, in NCHW order.

The structure of the authors' published network (it reproduces their outputs from their weights:
tests/models/test_authors.py), without `derain.models`' speed work, kept so tests can check that
the fast network computes the same thing: same parameter names and shapes (a state dict loads
into either), outputs equal to float rounding. No memory-format tricks, no in-place operations,
attention with F.normalize, LayerNorm written out over channels. It stands for the authors' code
in speed comparisons (`python -m derain.benchmarks.bench --straightforward`): the same operations in the same
order, timed in the same process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derain.models import ELFOutput, pad_to_multiple


def _crop(t: Tensor | None, size: tuple[int, int]) -> Tensor | None:
    return None if t is None else t[..., : size[0], : size[1]]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


def resize(x: Tensor, scale: float) -> Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class DepthwiseSeparableConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels),
            nn.Conv2d(in_channels, out_channels, 1),
        )


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = x.var(1, keepdim=True, unbiased=False)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            conv1x1(channels, channels // reduction),
            nn.ReLU(inplace=True),
            conv1x1(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class CAB(nn.Module):
    def __init__(self, channels: int, act: nn.Module | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels),
            act if act is not None else nn.PReLU(),
            conv3x3(channels, channels),
            ChannelAttention(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + x


class Fuse2(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = DepthwiseSeparableConv(2 * channels, channels)
        self.attention = ChannelAttention(channels)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.attention(self.mix(torch.cat((a, b), dim=1))) + a


class Fuse4(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix_far = DepthwiseSeparableConv(2 * channels, channels)
        self.mix_mid = DepthwiseSeparableConv(2 * channels, channels)
        self.mix_near = DepthwiseSeparableConv(2 * channels, channels)
        self.attention = ChannelAttention(channels)

    def forward(self, a: Tensor, b: Tensor, c3: Tensor, c4: Tensor) -> Tensor:
        f = self.mix_far(torch.cat((c3, c4), dim=1))
        f = self.mix_mid(torch.cat((b, f), dim=1))
        f = self.mix_near(torch.cat((a, f), dim=1))
        return self.attention(f) + f


class LightCAB(nn.Module):
    def __init__(self, channels: int, act: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(
            DepthwiseSeparableConv(channels, channels),
            act,
            DepthwiseSeparableConv(channels, channels),
            ChannelAttention(channels),
        )
        self.fuse = Fuse2(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(self.body(x), x)


class Resample(nn.Module):
    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.proj = conv1x1(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(resize(x, self.scale))


class GatedFeedForward(nn.Module):
    def __init__(self, channels: int, expansion: float = 2.66) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.expand = conv1x1(channels, 2 * hidden)
        self.depthwise = nn.Conv2d(
            2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False
        )
        self.act = nn.PReLU()
        self.project = conv1x1(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.depthwise(self.expand(x)).chunk(2, dim=1)
        return self.project(self.act(x1) * x2)


def transposed_attention(
    q: Tensor, k: Tensor, v: Tensor, heads: int, temperature: Tensor
) -> Tensor:
    b, c, h, w = q.shape
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = torch.softmax((q @ k.transpose(-2, -1)) * temperature, dim=-1)
    return (attn @ v).reshape(b, c, h, w)


class TransposedSelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = conv1x1(channels, 3 * channels)
        self.qkv_depthwise = nn.Conv2d(
            3 * channels, 3 * channels, 3, padding=1, groups=3 * channels, bias=False
        )
        self.project = conv1x1(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_depthwise(self.qkv(x)).chunk(3, dim=1)
        return self.project(transposed_attention(q, k, v, self.heads, self.temperature))


class TransformerBlock(nn.Module):
    def __init__(self, channels: int, heads: int, ffn_expansion: float = 2.66) -> None:
        super().__init__()
        self.norm_attn = LayerNorm2d(channels)
        self.attn = TransposedSelfAttention(channels, heads)
        self.norm_ffn = LayerNorm2d(channels)
        self.ffn = GatedFeedForward(channels, ffn_expansion)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm_attn(x))
        return x + self.ffn(self.norm_ffn(x))


class CrossTransformerBlock(nn.Module):
    def __init__(self, channels: int, heads: int, ffn_expansion: float = 2.66) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.norm_q, self.norm_k, self.norm_v = (LayerNorm2d(channels) for _ in range(3))
        self.to_q, self.to_k, self.to_v = (
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
            for _ in range(3)
        )
        self.project = conv1x1(channels, channels)
        self.norm_ffn = LayerNorm2d(channels)
        self.ffn = GatedFeedForward(channels, ffn_expansion)

    def forward(self, query_source: Tensor, key_source: Tensor, value_source: Tensor) -> Tensor:
        q = self.to_q(self.norm_q(query_source))
        k = self.to_k(self.norm_k(key_source))
        v = self.to_v(self.norm_v(value_source))
        x = value_source + self.project(transposed_attention(q, k, v, self.heads, self.temperature))
        return x + self.ffn(self.norm_ffn(x))


class TransformerBranch(nn.Module):
    def __init__(self, channels: int, depth: int, heads: int = 2, attention: bool = True) -> None:
        super().__init__()
        if attention:
            blocks = [TransformerBlock(channels, heads) for _ in range(depth)]
        else:
            blocks = [CAB(channels) for _ in range(max(1, round(0.75 * depth)))]
        self.body = nn.Sequential(*blocks, conv3x3(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + x


class EncoderLevel(nn.Module):
    def __init__(self, channels: int, act: nn.Module) -> None:
        super().__init__()
        self.cab = LightCAB(channels, act)
        self.fuse = Fuse2(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(x, self.cab(x))


class DecoderLevel(nn.Module):
    def __init__(self, channels: int, act: nn.Module) -> None:
        super().__init__()
        self.gather = Fuse4(channels)
        self.cab = CAB(channels, act)
        self.fuse = Fuse2(channels)

    def forward(self, a: Tensor, b: Tensor, c3: Tensor, c4: Tensor) -> Tensor:
        g = self.gather(a, b, c3, c4)
        return self.fuse(g, self.cab(g))


class ConvBranch(nn.Module):
    def __init__(self, channels: int, act: nn.Module) -> None:
        super().__init__()
        c = channels
        self.down_in, self.down_e1, self.down_e2 = (Resample(c, 0.5) for _ in range(3))
        self.enc1, self.enc2, self.enc3 = (EncoderLevel(c, act) for _ in range(3))
        self.e2_down, self.e1_down4 = Resample(c, 0.5), Resample(c, 0.25)
        self.d3_up, self.e1_down, self.e3_up = Resample(c, 2), Resample(c, 0.5), Resample(c, 2)
        self.d2_up, self.e2_up, self.e3_up4 = Resample(c, 2), Resample(c, 2), Resample(c, 4)
        self.up_out = Resample(c, 2)
        self.dec3, self.dec2, self.dec1 = (DecoderLevel(c, act) for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(self.down_in(x))
        e2 = self.enc2(self.down_e1(e1))
        e3 = self.enc3(self.down_e2(e2))
        d3 = self.dec3(e3, e3, self.e2_down(e2), self.e1_down4(e1))
        d2 = self.dec2(self.d3_up(d3), e2, self.e1_down(e1), self.e3_up(e3))
        d1 = self.dec1(self.d2_up(d2), e1, self.e2_up(e2), self.e3_up4(e3))
        return self.up_out(d1)


class AssociationStage(nn.Module):
    def __init__(
        self,
        channels: int,
        depth: int,
        heads: int = 2,
        attention: bool = True,
        conv_branch: bool = True,
        act: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.transformer = TransformerBranch(channels, depth, heads, attention)
        self.conv = ConvBranch(channels, act) if conv_branch else None
        self.fuse = Fuse2(channels) if conv_branch else None

    def forward(self, x: Tensor) -> Tensor:
        t = self.transformer(x)
        if self.conv is None:
            return t
        return self.fuse(t, self.conv(x))


def quadrants_to_channels(x: Tensor) -> Tensor:
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    return torch.cat((x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]), dim=1)


class RainDistributionNet(nn.Module):
    def __init__(
        self, width: int, depth: int, heads: int, attention: bool, conv_branch: bool
    ) -> None:
        super().__init__()
        act = nn.PReLU()  # one PReLU for all the subnet's CABs
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
        features = self.embed_image(x)
        if self.mam is not None:
            features = self.mam(features, rain_half, background_half)
        return self.reconstruct(self.stage(self.refine(features)))


class ReferenceELF(nn.Module):
    """ELF's structure, parameter names and arguments (structural ones: `ELF(**arguments)`)."""

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
        head: str = "refined_rain",
        multiple: int = 16,
    ) -> None:
        super().__init__()
        self.head = head
        self.multiple = multiple
        self.rain_net = (
            RainDistributionNet(width, depth, heads, attention, conv_branch) if rain_prior else None
        )
        self.recovery_net = BackgroundRecoveryNet(
            width, depth, heads, mam_heads, attention, conv_branch, rain_prior, cross_attention
        )

    def forward(self, x: Tensor) -> ELFOutput:
        h, w = x.shape[-2:]
        out = self._forward_padded(pad_to_multiple(x, self.multiple))
        half = ((h + 1) // 2, (w + 1) // 2)
        sizes = ((h, w), half, half, (h, w))
        return ELFOutput(*(_crop(t, size) for t, size in zip(out, sizes, strict=True)))

    def _forward_padded(self, x: Tensor) -> ELFOutput:
        rain_half = background_half = None
        if self.rain_net is not None:
            rain_half, background_half = self.rain_net(x)
        residual = self.recovery_net(x, rain_half, background_half)
        if self.head == "background":
            base = x if background_half is None else resize(background_half, 2)
            return ELFOutput(base + residual, background_half, rain_half, None)
        if self.head == "refined_rain" and rain_half is not None:
            rain = resize(rain_half, 2) + residual
        else:
            rain = residual
        return ELFOutput(x - rain, background_half, rain_half, rain)

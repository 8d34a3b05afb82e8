"""Building blocks of the ELF association network.

Every block works on feature maps B×C×H×W and keeps their shape unless its name says otherwise.
Convolutions carry no bias except the depthwise-separable ones, as in the reference network.

Speed: the blocks are written for channels-last maps (`ELF(channels_last=True)`, the default),
where a pixel's channels are contiguous: oneDNN runs the depthwise and 1×1 convs faster than on
contiguous (NCHW) maps, the LayerNorm needs no transposition and the attention reads q, k and v
in place (measured figures: docs/performance.md). tests/models/reference.py keeps the
straightforward version of each block that these must match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, bias: bool = False) -> PointwiseConv:
    return PointwiseConv(in_channels, out_channels, bias=bias)


class PointwiseConv(nn.Conv2d):
    """1×1 convolution: an `nn.Conv2d` (same parameters, same checkpoints) that reaches oneDNN.

    On CPU, PyTorch sends a 1×1 conv of fewer than 16 images on one thread to a plain GEMM,
    and oneDNN beats that for every shape here (forward at 128², one thread: 1.1–1.3× on a
    Zen 1 core; up to 2.2× for the GDFN's 48→254 channels on a Zen 3 core). Passing the
    B×C×H×W channels-last maps as B·H one-row images (a view, same MACs) always gets oneDNN.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        # compilers and exporters get the plain convolution (inductor chooses its own kernels)
        b, _, h, w = x.shape
        if (
            torch.jit.is_tracing()
            or torch.compiler.is_compiling()
            or x.device.type != "cpu"
            or not x.is_contiguous(memory_format=torch.channels_last)
            or b * h < 16
        ):
            return super().forward(x)
        rows = x.permute(0, 2, 3, 1).reshape(b * h, 1, w, self.in_channels).permute(0, 3, 1, 2)
        y = super().forward(rows).permute(0, 2, 3, 1)
        return y.reshape(b, h, w, self.out_channels).permute(0, 3, 1, 2)


def resize(x: Tensor, scale: float) -> Tensor:
    """Bilinear resampling by `scale` (0.5, 2, 0.25, 4), half-pixel centres."""
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise 3×3 (with bias) then pointwise 1×1 (with bias)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels),
            conv1x1(in_channels, out_channels, bias=True),
        )


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel, with weight and bias."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # F.layer_norm normalises the last dimension: a free view of channels-last maps (a copy of
        # contiguous ones); the result is channels-last either way
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average → 1×1 (C→C/reduction) → ReLU → 1×1 → sigmoid gate."""

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
    """Channel attention block: conv → PReLU → conv → channel attention, plus the input.

    `act`: the PReLU to use; the subnets pass one PReLU to all their CABs, which then share its
    weight (as the published network does). None gives the block a PReLU of its own.
    """

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
    """Fuses a main stream `a` with a side stream `b`: CA(dsc(a ‖ b)) + a."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = DepthwiseSeparableConv(2 * channels, channels)
        self.attention = ChannelAttention(channels)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.attention(self.mix(torch.cat((a, b), dim=1))) + a


class Fuse4(nn.Module):
    """Fuses four streams from the farthest (c4) to the nearest (a), then a channel-attention residual."""

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
    """CAB built from depthwise-separable convs, merged back into its input with Fuse2.

    `act`: a PReLU shared with other blocks (see `CAB`), or None for one of its own.
    """

    def __init__(self, channels: int, act: nn.Module | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            DepthwiseSeparableConv(channels, channels),
            act if act is not None else nn.PReLU(),
            DepthwiseSeparableConv(channels, channels),
            ChannelAttention(channels),
        )
        self.fuse = Fuse2(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(self.body(x), x)


class Resample(nn.Module):
    """Bilinear resampling by `scale` followed by a 1×1 conv (the network's Down/Up)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.proj = conv1x1(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(resize(x, self.scale))


class GatedFeedForward(nn.Module):
    """Gated FFN: 1×1 expand to 2h, depthwise 3×3, PReLU(x1)·x2, 1×1 back (h = int(C·expansion))."""

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


LOW_PRECISION = (torch.float16, torch.bfloat16)


def transposed_attention(
    q: Tensor, k: Tensor, v: Tensor, heads: int, temperature: Tensor
) -> Tensor:
    """Channel ("transposed") attention; cost linear in H·W.

    q, k, v: B×C×H×W. Per head, C/heads channels attend to each other through a
    (C/heads)×(C/heads) matrix of cosine similarities over all pixels, scaled by a learnable
    temperature (`temperature`: heads×1×1): `channel_attention_weights`. Returns B×C×H×W.
    """
    return apply_channel_attention(channel_attention_weights(q, k, heads, temperature), v)


def channel_attention_weights(q: Tensor, k: Tensor, heads: int, temperature: Tensor) -> Tensor:
    """The attention matrices of `transposed_attention`: B×heads×(C/heads)×(C/heads), each row a
    softmax over the key channels of its head (q, k: B×C×H×W).

    In float16/bfloat16 (half-precision weights or autocast) they are computed in float32: the
    dot products sum over every pixel before the norms divide them, and with a trained network
    they pass float16's 65504 from about 512² on (6.8e4 at 256², 2.3e6 at 1080p).
    """
    b, c, h, w = q.shape
    # B × pixels × heads × C/heads: views of channels-last maps (even of channel slices)
    q, k = (t.permute(0, 2, 3, 1).reshape(b, h * w, heads, c // heads) for t in (q, k))
    if q.dtype in LOW_PRECISION:
        with torch.autocast(q.device.type, enabled=False):
            return _attention_weights(q.float(), k.float(), temperature.float()).to(q.dtype)
    return _attention_weights(q, k, temperature)


def apply_channel_attention(attn: Tensor, v: Tensor) -> Tensor:
    """Mixes v's channels (B×C×H×W) by the per-head matrices `attn` (B×heads×d×d, d = C/heads)."""
    b, c, h, w = v.shape
    heads = attn.shape[1]
    v = v.permute(0, 2, 3, 1).reshape(b, h * w, heads, c // heads)
    out = v.transpose(1, 2) @ attn.to(v.dtype).transpose(-2, -1)  # B × heads × pixels × C/heads
    return out.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)


def _attention_weights(q: Tensor, k: Tensor, temperature: Tensor) -> Tensor:
    """softmax(cos(q, k) · τ) over B × pixels × heads × C/heads inputs: B × heads × C/h × C/h."""
    # Cosine similarity as the dot products over pixels divided by the two norms afterwards: the
    # division (and the temperature) then touch the small C/heads × C/heads matrix, not q and k.
    # The norms are clamped like F.normalize's (eps 1e-12); vector_norm's gradient at a zero
    # vector is 0, where sqrt(sum of squares) gives inf·0 = NaN (all-black inputs hit this).
    q_norm = torch.linalg.vector_norm(q, dim=1).clamp_min(1e-12)  # B × heads × C/heads
    k_norm = torch.linalg.vector_norm(k, dim=1).clamp_min(1e-12)
    dots = q.permute(0, 2, 3, 1) @ k.transpose(1, 2)  # B × heads × C/heads × C/heads
    scale = temperature / (q_norm.unsqueeze(-1) * k_norm.unsqueeze(-2))
    return torch.softmax(dots * scale, dim=-1)


class TransposedSelfAttention(nn.Module):
    """MDTA: 1×1 conv to q, k, v → depthwise 3×3 → channel attention per head → 1×1 conv."""

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
    """Residual transformer block (RTB): x + MDTA(LN(x)), then x + GDFN(LN(x))."""

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
    """XTB: queries from one stream attend over keys/values of another (channel attention).

    Each input has its own LayerNorm and depthwise 3×3 projection; the attended values are added
    to `value_source`, followed by a gated FFN residual.
    """

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

    def attention(self, query_source: Tensor, key_source: Tensor) -> tuple[Tensor, Tensor]:
        """The channel attention this block forms, as `forward` uses it: (weights, keys).

        weights: B×heads×d×d (d = channels / heads), row i how query channel i of a head
        distributes its attention over that head's key channels (a softmax: rows sum to 1).
        keys: B×channels×H×W, the projected key maps the weights refer to.
        """
        q = self.to_q(self.norm_q(query_source))
        k = self.to_k(self.norm_k(key_source))
        return channel_attention_weights(q, k, self.heads, self.temperature), k

    def forward(self, query_source: Tensor, key_source: Tensor, value_source: Tensor) -> Tensor:
        attn, _ = self.attention(query_source, key_source)
        v = self.to_v(self.norm_v(value_source))
        x = value_source + self.project(apply_channel_attention(attn, v))
        return x + self.ffn(self.norm_ffn(x))


class TransformerBranch(nn.Module):
    """The global branch: `depth` transformer blocks → 3×3 conv, plus the input.

    With `attention=False` (the "no self-attention" ablation) the blocks are CABs instead; a CAB
    costs ~4/3 of a transformer block at width 48, so `round(0.75·depth)` of them keep the
    branch's cost about the same.
    """

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
    """One encoder level of the convolution branch: Fuse2(x, LightCAB(x))."""

    def __init__(self, channels: int, act: nn.Module | None = None) -> None:
        super().__init__()
        self.cab = LightCAB(channels, act)
        self.fuse = Fuse2(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(x, self.cab(x))


class DecoderLevel(nn.Module):
    """One decoder level: g = Fuse4(a, b, c3, c4); Fuse2(g, CAB(g))."""

    def __init__(self, channels: int, act: nn.Module | None = None) -> None:
        super().__init__()
        self.gather = Fuse4(channels)
        self.cab = CAB(channels, act)
        self.fuse = Fuse2(channels)

    def forward(self, a: Tensor, b: Tensor, c3: Tensor, c4: Tensor) -> Tensor:
        g = self.gather(a, b, c3, c4)
        return self.fuse(g, self.cab(g))


class ConvBranch(nn.Module):
    """The local branch: a three-level U-Net with dense cross-scale connections, width C throughout.

    Input B×C×H×W with H, W divisible by 8; output same shape. `act`: a PReLU shared by the
    branch's CABs (see `CAB`).
    """

    def __init__(self, channels: int, act: nn.Module | None = None) -> None:
        super().__init__()
        c = channels
        self.down_in, self.down_e1, self.down_e2 = (Resample(c, 0.5) for _ in range(3))
        self.enc1, self.enc2, self.enc3 = (EncoderLevel(c, act) for _ in range(3))
        # skip connections into the decoder, named by source level and direction
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
    """Self-attention and convolution associated: Fuse2(TransformerBranch(x), ConvBranch(x)).

    `conv_branch=False` drops the convolution branch (the transformer branch alone, an ablation).
    `act`: the PReLU the convolution branch's CABs share (see `CAB`).
    """

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

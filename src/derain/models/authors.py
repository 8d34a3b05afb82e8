"""Weights of the authors' published network (`ALformer` in their code) as an `ELF`.

Their network and this one compute the same function; only the names of the tensors differ, plus
one layout detail: their sub-pixel upsampling orders the four sub-pixels of a channel transposed
relative to `nn.PixelShuffle`, so the output channels of the conv before it are permuted.

Names are translated one way, from ours to theirs (`authors_key`), over the tensors of the network
the checkpoint's shapes describe; a checkpoint is then read through the inverted table, so an
unknown, missing or mis-shaped tensor is named in the authors' own terms.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from derain.models.elf import ELF


class AuthorsCheckpointError(ValueError):
    """A source that is not a state dict of the authors' network; the message says what is wrong."""


# ours → theirs, applied in order to each of our state-dict keys (module paths; the parameter
# name at the end stays). Subnet-level names first, then the blocks inside them.
_SUBNETS: list[tuple[str, str]] = [
    (r"^rain_net\.", "dsnet."),
    (r"^recovery_net\.", "ssnet."),
    (r"^dsnet\.embed_half\.", "dsnet.shallow_feat1."),
    (r"^dsnet\.embed_quadrants\.2\.", "dsnet.former.0."),
    (r"^dsnet\.embed_quadrants\.", "dsnet.shallow_feat2."),
    (r"^dsnet\.merge\.", "dsnet.fuse_conv."),
    (r"^dsnet\.to_rain\.", "dsnet.tail."),
    (r"^ssnet\.embed_image\.", "ssnet.stem.conv_stem0."),
    (r"^ssnet\.mam\.embed_rain\.", "ssnet.stem.conv_stem2."),
    (r"^ssnet\.mam\.embed_background\.", "ssnet.stem.conv_stem3."),
    (r"^ssnet\.mam\.fuse\.", "ssnet.stem.S2FB."),
    (r"^ssnet\.mam\.cross\.", "ssnet.stem.former."),
    (r"^ssnet\.refine\.", "ssnet.former.0."),
    (r"^ssnet\.reconstruct\.0\.", "ssnet.deep_conv."),
    (r"^ssnet\.reconstruct\.2\.", "ssnet.tail."),
    (r"^(\w+)\.stage\.fuse\.", r"\1.S2FB_fuse."),
    (r"^(\w+)\.stage\.transformer\.body\.(\d+)\.", r"\1.orsnet.orb.modules_body.\2."),
    (r"^(d|s)snet\.stage\.conv\.(enc\d|down_in|down_e1|down_e2)\.", r"\1snet.\1snnet_encoder.\2."),
    (r"^(d|s)snet\.stage\.conv\.", r"\1snet.\1snnet_decoder."),
]
# the convolution branch's levels and resampling steps
_RESAMPLERS = {
    "down_in": "down_stage1.down",
    "down_e1": "down_stage2.down",
    "down_e2": "down_stage3.down",
    "up_out": "up_stage1.up",
    "d2_up": "up_stage2.up",
    "d3_up": "up_stage3.up",
    "e3_up": "up_32.up",
    "e3_up4": "up_31.up",
    "e2_up": "up_21.up",
    "e1_down4": "down_13.down",
    "e2_down": "down_23.down",
    "e1_down": "down_12.down",
}
_BRANCH: list[tuple[str, str]] = [
    (r"\.enc(\d)\.cab\.", r".encoder_level\1.CAB1."),
    (r"\.enc(\d)\.fuse\.", r".encoder_level\1.S2FB2."),
    (r"\.dec(\d)\.gather\.", r".decoder_level\1.S2FB0."),
    (r"\.dec(\d)\.cab\.", r".decoder_level\1.CAB1."),
    (r"\.dec(\d)\.fuse\.", r".decoder_level\1.S2FB2."),
    (rf"\.({'|'.join(_RESAMPLERS)})\.proj\.", lambda m: f".{_RESAMPLERS[m.group(1)]}.1."),
]
_BLOCKS: list[tuple[str, str]] = [
    # cross transformer block (MAM): their query/key names are swapped relative to their roles
    (r"stem\.former\.norm_q\.", "stem.former.norm_key.body."),
    (r"stem\.former\.norm_k\.", "stem.former.norm_query.body."),
    (r"stem\.former\.norm_v\.", "stem.former.norm_value.body."),
    (r"stem\.former\.to_([qkv])\.", r"stem.former.attn.\1."),
    (r"stem\.former\.temperature$", "stem.former.attn.temperature"),
    (r"stem\.former\.project\.", "stem.former.attn.project_out."),
    # transformer blocks
    (r"\.norm_attn\.", ".norm1.body."),
    (r"\.norm_ffn\.", ".norm2.body."),
    (r"\.attn\.qkv_depthwise\.", ".attn.qkv_dwconv."),
    (r"\.attn\.project\.", ".attn.project_out."),
    (r"\.ffn\.act\.", ".ffn.act1."),
    (r"\.ffn\.expand\.", ".ffn.project_in."),
    (r"\.ffn\.depthwise\.", ".ffn.dwconv."),
    (r"\.ffn\.project\.", ".ffn.project_out."),
    # fusions, channel attention and depthwise-separable convs
    (r"\.fuse\.", ".S2FB2."),
    (r"\.mix_far\.", ".DSC1."),
    (r"\.mix_mid\.", ".DSC2."),
    (r"\.mix_near\.", ".DSC3."),
    (r"\.mix\.", ".DSC."),
    (r"\.attention\.gate\.", ".CA_fea.gate."),
    (r"\.body\.3\.gate\.", ".CA.gate."),
    (r"\.gate\.1\.", ".conv_du.0."),
    (r"\.gate\.3\.", ".conv_du.2."),
    (r"\.(DSC\d?|body\.[02])\.0\.", r".\1.depth_conv."),
    (r"\.(DSC\d?|body\.[02])\.1\.", r".\1.point_conv."),
]


def authors_key(key: str, depth: int) -> str:
    """The authors' name of one of our state-dict keys, for a network of `depth` blocks per branch."""
    # the transformer branch's closing conv follows its blocks in our Sequential
    key = re.sub(rf"\.stage\.transformer\.body\.{depth}\.", ".stage.orb_conv.", key)
    for rules in (_SUBNETS, _BRANCH, _BLOCKS):
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
    return key.replace(".stage.orb_conv.", ".orsnet.orb.conv.")


def from_authors(source: Mapping[str, Any] | str | os.PathLike) -> ELF:
    """The authors' network with their weights, as an `ELF` in eval mode.

    `source`: their state dict (`model.state_dict()`), the dict their training script saves
    (`{"epoch", "state_dict", "optimizer"}`, keys prefixed `module.` by `nn.DataParallel`), or the
    path of a file holding either (read with `torch.load(weights_only=True)`: no code runs).
    Width, depth and attention heads are read off the tensors' shapes.

    Raises:
        FileNotFoundError: a path that does not exist.
        AuthorsCheckpointError: the source is not a checkpoint, or a tensor is unknown, missing or
            of the wrong shape (named in the authors' terms); nothing is returned then.
    """
    name = str(source) if isinstance(source, str | os.PathLike) else "the state dict"
    state = _state_dict(source, name)
    model = ELF(**_arguments(state, name))
    ours = model.state_dict()
    depth = len(model.recovery_net.stage.transformer.body) - 1
    theirs_to_ours = {authors_key(key, depth): key for key in ours}
    unknown = sorted(set(state) - set(theirs_to_ours))
    missing = sorted(set(theirs_to_ours) - set(state))
    if unknown or missing:
        raise AuthorsCheckpointError(
            f"{name} is not a state dict of the authors' network of width "
            f"{model.recovery_net.embed_image.out_channels} and depth {depth}: "
            + "; ".join(
                f"{label} {_listing(keys)}"
                for label, keys in (("unknown tensors", unknown), ("missing tensors", missing))
                if keys
            )
        )
    converted = {}
    for theirs, key in theirs_to_ours.items():
        value = state[theirs]
        if tuple(value.shape) != tuple(ours[key].shape):
            raise AuthorsCheckpointError(
                f"{name}: tensor {theirs!r} has shape {tuple(value.shape)}, expected "
                f"{tuple(ours[key].shape)} for a network of this width and depth"
            )
        converted[key] = value
    converted["recovery_net.reconstruct.0.weight"] = _pixel_shuffle_order(
        converted["recovery_net.reconstruct.0.weight"]
    )
    model.load_state_dict(converted)
    return model.eval()


def _pixel_shuffle_order(weight: Tensor) -> Tensor:
    """Their sub-pixel upsampling reads output channel 4c + 2j + i where `nn.PixelShuffle(2)` reads
    4c + 2i + j (row offset i, column offset j): reorder the conv's output channels to match."""
    c = weight.shape[0] // 4
    return weight.reshape(c, 2, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _state_dict(source: Mapping[str, Any] | str | os.PathLike, label: str) -> dict[str, Tensor]:
    if isinstance(source, str | os.PathLike):
        source = _read(Path(source))
    if not isinstance(source, Mapping):
        raise AuthorsCheckpointError(
            f"{label} is a {type(source).__name__}, expected the authors' state dict or the dict "
            "their training script saves ({'epoch', 'state_dict', 'optimizer'})"
        )
    state = source.get("state_dict", source)
    if not isinstance(state, Mapping) or not state:
        raise AuthorsCheckpointError(f"{label} holds no state dict")
    non_tensors = sorted(k for k, v in state.items() if not isinstance(v, Tensor))
    if non_tensors:
        raise AuthorsCheckpointError(
            f"{label}: entries {_listing(non_tensors)} are not tensors; expected a state dict"
        )
    if all(key.startswith("module.") for key in state):  # saved from nn.DataParallel
        state = {key[len("module.") :]: value for key, value in state.items()}
    return dict(state)


def _read(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the authors' .pth checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load signals a non-checkpoint by many exception types
        raise AuthorsCheckpointError(
            f"{path} is not a PyTorch checkpoint that loads without running code "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "give the file the authors' training script saved"
        ) from None


_SHAPE_KEYS = {
    "width": "dsnet.shallow_feat1.0.weight",
    "heads": "dsnet.orsnet.orb.modules_body.0.attn.temperature",
    "mam_heads": "ssnet.stem.former.attn.temperature",
}


def _arguments(state: Mapping[str, Tensor], name: str) -> dict[str, Any]:
    """ELF's arguments from the checkpoint's shapes: width, depth and attention heads."""
    absent = [key for key in _SHAPE_KEYS.values() if key not in state]
    if absent:
        raise AuthorsCheckpointError(
            f"{name} is not a state dict of the authors' network: missing tensors "
            f"{_listing(absent)} (keys start 'dsnet.' and 'ssnet.')"
        )
    depths = {
        net: len(
            {
                m.group(1)
                for k in state
                if (m := re.match(rf"{net}\.orsnet\.orb\.modules_body\.(\d+)\.", k))
            }
        )
        for net in ("dsnet", "ssnet")
    }
    if depths["dsnet"] != depths["ssnet"] or depths["dsnet"] == 0:
        raise AuthorsCheckpointError(
            f"{name}: the two subnets have {depths['dsnet']} and {depths['ssnet']} transformer "
            "blocks; ELF needs the same number (at least 1) in both"
        )
    return {
        "width": state[_SHAPE_KEYS["width"]].shape[0],
        "depth": depths["dsnet"],
        "heads": state[_SHAPE_KEYS["heads"]].shape[0],
        "mam_heads": state[_SHAPE_KEYS["mam_heads"]].shape[0],
        "head": "refined_rain",
    }


def _listing(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")

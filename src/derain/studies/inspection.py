"""A look inside a trained network (notebooks/02_inspect.ipynb calls this).

`restoration_layers` splits one rainy image into what the network sees and predicts (rain layer
at half and full resolution, restored image, error maps); `attention_maps` captures the
multi-input attention module's channel attention (which image-feature channels the rain features
attend to) from the block itself, through a forward hook that leaves the network's code untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import DictConfig
from torch import Tensor, nn

from derain.evaluation.metrics import psnr


@dataclass
class MamAttention:
    """The multi-input attention module's cross attention for one batch.

    weights: B×heads×d×d (d = width / heads), softmax rows: row i is how rain-feature channel i
        (query) of a head distributes its attention over that head's image-feature channels
        (keys); each row sums to 1, a uniform row is 1/d everywhere.
    keys: B×width×⌈H/2⌉×⌈W/2⌉, the image-feature key maps the weights refer to (before
        normalising, cropped to the unpadded image).
    output: the network's output for the batch.
    """

    weights: Tensor
    keys: Tensor
    output: Any

    def received(self) -> Tensor:
        """B×width: the attention each image-feature channel receives (column sums per head)."""
        b, heads, d, _ = self.weights.shape
        return self.weights.sum(dim=-2).reshape(b, heads * d)


def _rainy(batch: Tensor | dict[str, Any]) -> Tensor:
    return batch["rainy"] if isinstance(batch, dict) else batch


def _mam_cross(model: nn.Module) -> nn.Module:
    network = getattr(model, "model", model)  # a DerainModule holds the ELF as .model
    mam = getattr(network.recovery_net, "mam", None)
    if mam is None:
        raise ValueError(
            "this network has no multi-input attention module (model.rain_prior=false): "
            "inspect a checkpoint trained with the rain prior"
        )
    if mam.cross is None:
        raise ValueError(
            "this network's MAM mixes by concatenation + conv (model.cross_attention=false, "
            "the no_mam ablation): there is no attention to show"
        )
    return mam.cross


@torch.no_grad()
def attention_maps(model: nn.Module, batch: Tensor | dict[str, Any]) -> MamAttention:
    """Runs `model` (an ELF or a DerainModule) on a batch (B×3×H×W in [0,1], or a dict with
    "rainy") and captures the MAM's channel attention: a forward hook on
    `recovery_net.mam.cross` asks the block for the attention it forms from its inputs
    (`CrossTransformerBlock.attention`)."""
    cross = _mam_cross(model)
    captured: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        captured["weights"], captured["keys"] = module.attention(args[0], args[1])

    rainy = _rainy(batch)
    handle = cross.register_forward_hook(hook)
    was_training = model.training
    try:
        model.eval()
        output = model(rainy)
    finally:
        handle.remove()
        model.train(was_training)
    # the network pads its input to a multiple of 16; keep the key maps of the image itself
    h, w = (rainy.shape[-2] + 1) // 2, (rainy.shape[-1] + 1) // 2
    return MamAttention(captured["weights"], captured["keys"][..., :h, :w], output)


@dataclass
class RestorationLayers:
    """What the network makes of one rainy image; images 3×H×W in [0,1] (rain layers signed).

    rain_half: predicted rain layer R½ (None without the rain prior).
    rain: predicted full-resolution rain: the network's R (refined_rain and rain heads), else
        rainy − restored.
    true_rain: rainy − clean.
    """

    name: str
    rainy: Tensor
    clean: Tensor
    restored: Tensor
    rain_half: Tensor | None
    rain: Tensor
    true_rain: Tensor
    psnr: float
    input_psnr: float

    @property
    def error(self) -> Tensor:
        """|restored − clean| averaged over channels, H×W."""
        return (self.restored - self.clean).abs().mean(0)

    @property
    def input_error(self) -> Tensor:
        """|rainy − clean| averaged over channels, H×W."""
        return (self.rainy - self.clean).abs().mean(0)


@torch.no_grad()
def restoration_layers(
    model: nn.Module, batch: dict[str, Any], index: int = 0
) -> RestorationLayers:
    """Runs `model` (an ELF) on a batch with "rainy" and "clean" and returns image `index`'s
    layers, with Y-channel PSNR of the restored and the rainy image."""
    was_training = model.training
    try:
        model.eval()
        out = model(batch["rainy"])
    finally:
        model.train(was_training)
    rainy, clean = batch["rainy"][index].float(), batch["clean"][index].float()
    restored = out.image[index].float().clamp(0, 1)
    rain = out.rain[index] if out.rain is not None else rainy - restored
    names = batch.get("name")
    return RestorationLayers(
        name=str(names[index]) if names else f"image {index}",
        rainy=rainy,
        clean=clean,
        restored=restored,
        rain_half=None if out.rain_half is None else out.rain_half[index],
        rain=rain,
        true_rain=rainy - clean,
        psnr=float(psnr(restored[None], clean[None])[0]),
        input_psnr=float(psnr(rainy[None], clean[None])[0]),
    )


def example_batches(data_cfg: DictConfig, per_set: int = 2) -> list[dict[str, Any]]:
    """The first `per_set` images of each test set of a data config, as single-image batches
    with "set" added ("rainy"/"clean": 1×3×H×W in [0,1])."""
    datamodule = instantiate(data_cfg)
    datamodule.setup("test")
    batches = []
    for name, loader in zip(datamodule.test_set_names, datamodule.test_dataloader(), strict=True):
        for i, batch in enumerate(loader):
            if i >= per_set:
                break
            batches.append({**batch, "set": name})
    return batches


def _show(ax, image: Tensor, title: str, **kwargs):
    array = image.detach().cpu().float()
    if array.ndim == 3:
        array = array.permute(1, 2, 0).clamp(0, 1)
    handle = ax.imshow(array.numpy(), **kwargs)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return handle


def plot_layers(layers: RestorationLayers) -> Figure:
    """2×4 panel: rainy | R½ | R | restored, then clean | true rain | both error maps.

    Rain layers show |R| averaged over channels on one grey scale (the true rain's 99th
    percentile is white); the error maps share one colour scale.
    """
    fig = Figure(figsize=(13, 6.4), layout="constrained")
    axes = fig.subplots(2, 4)
    rain_max = float(torch.quantile(layers.true_rain.abs().mean(0).flatten(), 0.99)) or 1.0
    error_max = float(layers.input_error.max()) or 1.0
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": rain_max}
    heat = {"cmap": "magma", "vmin": 0.0, "vmax": error_max}
    _show(axes[0, 0], layers.rainy, f"rainy ({layers.input_psnr:.2f} dB)")
    if layers.rain_half is not None:
        _show(axes[0, 1], layers.rain_half.abs().mean(0), "predicted rain R½ (half res.)", **grey)
    else:
        axes[0, 1].set_axis_off()
        axes[0, 1].set_title("no R½ (no rain prior)", fontsize=8)
    _show(axes[0, 2], layers.rain.abs().mean(0), "predicted rain R (full res.)", **grey)
    _show(axes[0, 3], layers.restored, f"restored ({layers.psnr:.2f} dB)")
    _show(axes[1, 0], layers.clean, "clean")
    _show(axes[1, 1], layers.true_rain.abs().mean(0), "true rain |rainy − clean|", **grey)
    handle = _show(axes[1, 2], layers.error, "error |restored − clean|", **heat)
    _show(axes[1, 3], layers.input_error, "error |rainy − clean|", **heat)
    fig.colorbar(handle, ax=axes[1, 2:], shrink=0.8)
    fig.suptitle(layers.name, fontsize=10)
    return fig


def plot_attention(maps: MamAttention, index: int = 0, top: int = 4) -> Figure:
    """Top row: per head, the d×d matrix of rain-feature channels (rows, queries) attending to
    image-feature channels (columns, keys). Bottom row: the `top` image-feature channels that
    receive the most attention, as maps (grey scale from their 1st to 99th percentile)."""
    weights = maps.weights[index].cpu()
    heads, d, _ = weights.shape
    received = maps.received()[index].cpu()
    top = min(top, received.numel())
    columns = max(heads, top)
    fig = Figure(figsize=(2.6 * columns, 5.4), layout="constrained")
    axes = fig.subplots(2, columns, squeeze=False)
    for h in range(columns):
        ax = axes[0, h]
        if h >= heads:
            ax.set_axis_off()
            continue
        handle = ax.imshow(weights[h].numpy(), cmap="viridis", vmin=0, vmax=float(weights.max()))
        ax.set_title(f"head {h}: rain ch. → image ch.\n(uniform = {1 / d:.2f})", fontsize=8)
        ax.set_xlabel("image-feature channel (key)", fontsize=7)
        ax.set_ylabel("rain-feature channel (query)", fontsize=7)
        ax.set_xticks(range(d), [str(h * d + j) for j in range(d)], fontsize=6)
        ax.set_yticks(range(d), [str(h * d + j) for j in range(d)], fontsize=6)
    fig.colorbar(handle, ax=axes[0, :], shrink=0.8)
    order = torch.argsort(received, descending=True)[:top]
    for j in range(columns):
        ax = axes[1, j]
        if j >= top:
            ax.set_axis_off()
            continue
        channel = int(order[j])
        key = maps.keys[index, channel].float().cpu()
        # percentiles: a map's structure often rides on a large constant offset
        low, high = torch.quantile(key.flatten(), torch.tensor([0.01, 0.99])).tolist()
        _show(
            ax,
            key,
            f"image ch. {channel}: receives {float(received[channel]):.2f}",
            cmap="gray",
            vmin=low,
            vmax=high if high > low else low + 1e-6,
        )
    return fig

"""Exporting ELF to ONNX and TorchScript with dynamic batch, height and width.

The exported graph is `ExportableELF`: the restored image only, with the padding to a multiple of
16 done by shape arithmetic that the tracer records, so one file serves every input size
≥ 9×9 pixels (reflect padding needs each pad to be smaller than the side it extends; ELF pads by
at most 15 for sides ≥ 16 and by 16 − side for sides 9–15).

`run(cfg)` is the task behind `derain-export` (conf/export.yaml).
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import Tensor, nn

from derain.inference.checkpoint import load_model
from derain.inference.settings import InferenceSettings
from derain.inference.sources import WEIGHTS_FILE, resolve_model
from derain.models import ELF
from derain.models.blocks import LayerNorm2d
from derain.models.elf import padding
from derain.runtime.console import make_console

if TYPE_CHECKING:
    from omegaconf import DictConfig

EXPORT_FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17
_INPUT_NAME, _OUTPUT_NAME = "rainy", "restored"
_DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


class StaticShapeLayerNorm2d(nn.Module):
    """`LayerNorm2d` with its normalised shape fixed at construction.

    `LayerNorm2d` reads the shape from its input, which the TorchScript-based ONNX exporter
    cannot turn into a constant; the arithmetic is the same, so outputs match to float rounding.
    """

    def __init__(self, norm: LayerNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps
        self.normalized_shape = tuple(norm.weight.shape)

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return y.permute(0, 3, 1, 2)


class ExportableELF(nn.Module):
    """B×3×H×W RGB in [0, 1] → restored B×3×H×W, for any H, W ≥ 9, as one traceable graph.

    Wraps a copy of `model` (the original is left untouched) with its LayerNorms made static.
    """

    def __init__(self, model: ELF) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        for parent in list(self.model.modules()):
            for name, child in parent.named_children():
                if isinstance(child, LayerNorm2d):
                    setattr(parent, name, StaticShapeLayerNorm2d(child))
        self.multiple = model.multiple

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        pad_bottom, pad_right = padding(height, width, self.multiple)
        # reflect only: pad_to_multiple's choice of mode would be a branch the trace freezes
        padded = F.pad(x, (0, pad_right, 0, pad_bottom), mode="reflect")
        # kept contiguous, unlike ELF.forward's channels-last maps: ONNX has no memory layouts,
        # and every block's contiguous path traces to plain convolutions
        return self.model.forward_padded(padded).image[:, :, :height, :width]


def export_onnx(
    model: ELF,
    path: str | os.PathLike,
    example_size: tuple[int, int] = (64, 64),
    opset: int = ONNX_OPSET,
    dynamo: bool = False,
) -> Path:
    """Writes `model` as an ONNX graph with input "rainy" and output "restored" (B×3×H×W,
    dynamic batch/height/width). Returns the path.

    Args:
        example_size: (H, W) of the tracing example; any size ≥ 9×9 works.
        dynamo: False uses the TorchScript-based exporter (seconds); True the torch.export-based
            one (minutes on CPU for `elf`).
    """
    path = _prepare_output(path)
    wrapper = ExportableELF(model).cpu().eval()
    example = torch.rand(1, 3, *example_size)
    if dynamo:
        dims = {axis: torch.export.Dim.DYNAMIC for axis in _DYNAMIC_AXES}
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=[_INPUT_NAME],
            output_names=[_OUTPUT_NAME],
            dynamic_shapes={"x": dims},
        )
        return path
    with _fail_on_baked_shapes():
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[_INPUT_NAME],
            output_names=[_OUTPUT_NAME],
            dynamic_axes={_INPUT_NAME: _DYNAMIC_AXES, _OUTPUT_NAME: _DYNAMIC_AXES},
        )
    return path


def export_torchscript(
    model: ELF, path: str | os.PathLike, example_size: tuple[int, int] = (64, 64)
) -> Path:
    """Writes `model` as a traced TorchScript module (`torch.jit.load(path)(x)` → restored
    B×3×H×W, any batch and size ≥ 9×9, on CPU). Returns the path."""
    path = _prepare_output(path)
    wrapper = ExportableELF(model).cpu().eval()
    example = torch.rand(1, 3, *example_size)
    with _fail_on_baked_shapes(), torch.no_grad():
        # export_difference checks the trace on other sizes, which the same-input check cannot
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    traced.save(str(path))
    return path


def export(model: ELF, path: str | os.PathLike, format: str, **options) -> Path:
    """`export_onnx` or `export_torchscript` by `format` ("onnx" / "torchscript")."""
    if format == "onnx":
        return export_onnx(model, path, **options)
    if format == "torchscript":
        return export_torchscript(model, path, **options)
    raise ValueError(f"format={format!r} is not one of {', '.join(EXPORT_FORMATS)}")


def export_difference(
    path: str | os.PathLike, model: ELF, sizes: tuple[tuple[int, int], ...] = ((37, 61), (64, 80))
) -> float:
    """Largest |exported − PyTorch| over random images of `sizes` (H, W), run on CPU: the ONNX
    file (`.onnx`) in onnxruntime, anything else as TorchScript."""
    path = Path(path)
    model = copy.deepcopy(model).cpu().eval()
    if path.suffix == ".onnx":
        try:
            import onnxruntime
        except ImportError as err:
            raise ImportError(
                "checking an ONNX file needs onnxruntime: pip install 'derain[export]'"
            ) from err
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run_exported(x: Tensor) -> Tensor:
            return torch.from_numpy(session.run(None, {_INPUT_NAME: x.numpy()})[0])

    else:
        run_exported = torch.jit.load(str(path), map_location="cpu")
    generator = torch.Generator().manual_seed(0)
    largest = 0.0
    # TorchScript's optimising executor would spend seconds compiling fusions for two calls
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        for height, width in sizes:
            x = torch.rand(1, 3, height, width, generator=generator)
            difference = (run_exported(x) - model(x).image).abs().max().item()
            largest = max(largest, difference)
    return largest


_DEFAULT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TOLERANCE = 1e-4
"""Largest |exported − PyTorch| `run` calls ok: float32 reordering between runtimes stays far
below it."""


@dataclass(frozen=True)
class Exported:
    """What `run` wrote: the `format` file `output` of `megabytes`, and its largest difference
    to PyTorch (`export_difference`; None unless verified)."""

    output: Path
    format: str
    megabytes: float
    difference: float | None


def run(cfg: DictConfig, console: Console | None = None) -> Exported:
    """Exports `cfg.ckpt_path` as `cfg.format` to `cfg.output` (see conf/export.yaml)."""
    console = console or make_console()
    settings = InferenceSettings.from_config(cfg)
    settings.check_applies(("ckpt_path",), "derain-export (the file holds the network alone)")
    if cfg.format not in EXPORT_FORMATS:
        raise ValueError(f"format={cfg.format} is not one of {', '.join(EXPORT_FORMATS)}")
    checkpoint = resolve_model(settings.ckpt_path)
    model = load_model(checkpoint)
    if cfg.output:
        out = Path(cfg.output)
    elif checkpoint.name == WEIGHTS_FILE:  # a named model or folder: not into the package
        out = Path(checkpoint.parent.name + _DEFAULT_SUFFIXES[cfg.format])
    else:
        out = checkpoint.with_suffix(_DEFAULT_SUFFIXES[cfg.format])
    options = {"opset": cfg.opset, "dynamo": cfg.dynamo} if cfg.format == "onnx" else {}
    with console.status(f"exporting {checkpoint} as {cfg.format}"):
        export(model, out, cfg.format, **options)
    megabytes = out.stat().st_size / 1e6
    console.print(f"wrote {out} ({megabytes:.1f} MB)", highlight=False)
    difference = None
    if cfg.verify:
        difference = export_difference(out, model)
        verdict = "ok" if difference <= TOLERANCE else "[bold red]above tolerance[/]"
        console.print(
            f"max |{cfg.format} − PyTorch| on 37×61 and 64×80 images: {difference:.2e} "
            f"({verdict}, tolerance {TOLERANCE:.0e})",
            highlight=False,
        )
    return Exported(out, cfg.format, megabytes, difference)


def _prepare_output(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class _fail_on_baked_shapes(warnings.catch_warnings):
    """Turns the tracer's warnings into errors: each one marks a size frozen into the graph,
    which would make the file wrong for other input sizes. The exporters' deprecation notices
    are silenced (the TorchScript-based paths are the fast, proven ones here)."""

    def __enter__(self):
        entered = super().__enter__()
        warnings.filterwarnings("error", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return entered

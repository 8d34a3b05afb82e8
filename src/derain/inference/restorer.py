"""`Restorer`: derains images of any size, from NumPy, PIL or torch, within a memory budget.

    restorer = derain.load("model.ckpt")          # CUDA when present, else CPU
    clean = restorer(rainy)                       # same kind (and dtype / device) as `rainy`
    clean, rain = restorer.separate(rainy)        # and the rain layer

An image whose forward pass would exceed `max_memory`, or whose side exceeds the model's
`max_tile` (the largest input it works well on in one pass; see
`derain.inference.StoredNetwork`), is processed as overlapping tiles (`derain.inference.tiling`),
the largest that fit both; `tile=` forces a tile size instead.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from derain.inference.checkpoint import load_network
from derain.inference.photo_files import (
    DEFAULT_QUALITY,
    Photo,
    luminance,
    luminance_rgb,
    read_photo,
    write_photo,
)
from derain.inference.settings import MODEL_MAX_TILE, PRECISIONS, InferenceSettings
from derain.inference.tiling import (
    axis_tiles,
    parse_memory_size,
    round_up,
    tiled_apply,
)
from derain.models import ELF
from derain.models.ensemble import ensemble_transforms, self_ensemble_name
from derain.models.ensemble import self_ensemble as ensemble_mean
from derain.runtime.memory import peak_activation_bytes
from derain.runtime.memory import retain_freed_memory as keep_freed_memory

DEFAULT_CPU_MEMORY = "2GB"
GPU_MEMORY_FRACTION = 0.8
"""Without `max_memory`, the budget on a GPU is this share of its free memory at load time."""

IMAGE_BUFFER_BYTES_PER_PIXEL = 40
"""Full-resolution float32 buffers that live through a whole image, whatever the tiling: the input
(12 bytes per pixel), the blended output (12), the blend weights (4) and the converted result (12)."""

# ELF attends over channels, not pixels, so its activation memory is a per-pixel cost plus a
# small fixed one (weight copies in other memory layouts). Measured on a 128² input, the fixed
# part inflates the per-pixel figure a little (12% for `elf`), which errs on the safe side for
# every larger image.
_MEASURED_SIDE = 128

Progress = Callable[[int, int], None]
"""Called as progress(done, total) before the first and after every network pass of an image:
`total` is `TilePlan.tiles` × the self-ensemble's passes per tile."""

_UNCHANGED: Any = object()

RETAINED_MEMORY_OVERHEAD = 2.0
"""Resident memory of a pass with freed memory retained, per byte of its live activations:
the heap keeps freed blocks it cannot reuse for larger ones (MEASURED below)."""

FLOAT_RANGE_SLACK = 0.5
"""Float inputs may stray this far outside [0, 1] (resampling overshoot; clipped); farther is
refused as the wrong range (an image in [0, 255])."""


@dataclass(frozen=True)
class TilePlan:
    """How one image (batch × H × W) is processed.

    tile: the tile-side limit handed to `tiled_apply`; None when the whole image goes through
        in one pass.
    tile_shape: (height, width) of each tile, ≤ tile, multiples of 16 unless a side of the image
        is shorter (the image's own size for one pass).
    rows, cols: tiles along the height and the width (1 × 1 for one pass).
    estimated_bytes: working memory of the plan: activations of one pass plus the image's
        full-resolution buffers (model weights and the framework itself not counted).
    budget_bytes: the `max_memory` it was planned against.
    """

    height: int
    width: int
    batch: int
    tile: int | None
    tile_shape: tuple[int, int]
    rows: int
    cols: int
    estimated_bytes: int
    budget_bytes: int

    @property
    def tiles(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class DerainedPhoto:
    """What `Restorer.derain_file` read and wrote.

    photo: the input as read (`derain.inference.photo_files.Photo`; `photo.pixels` is upright).
    restored, rain: the derained image and the removed rain, H×W×3 float32 in [0, 1].
    lost: what the output's format could not hold (e.g. ["alpha"] for a JPEG), else empty.
    """

    photo: Photo
    restored: np.ndarray
    rain: np.ndarray
    lost: list[str]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device `device` names; for "auto", CUDA when a GPU is available, else CPU.

    Raises:
        ValueError: the name is no device, or names a GPU this machine (or this build of
            PyTorch) does not have; the message says how to use a GPU only when there is one.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f'device={device!r} is not a device: use device="auto" (a GPU when there is one, '
            'else the CPU), "cpu", "cuda" or "cuda:1"' + f" ({err})"
        ) from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (chosen.index is not None and chosen.index >= count):
            have = (
                f"this machine has {count} GPU(s) (cuda:0-cuda:{count - 1})"
                if count
                else "PyTorch finds no CUDA GPU here"
                + ("" if torch.backends.cuda.is_built() else " (a CPU-only build of PyTorch)")
            )
            raise ValueError(
                f'device={str(device)!r} names a GPU, but {have}: use device="auto" to run on '
                'a GPU when there is one and on the CPU otherwise, or device="cpu"'
            )
    return chosen


def default_memory_budget(device: torch.device) -> int:
    """Bytes an image may use when `max_memory` is not given: 2 GB on CPU, 80% of the free
    memory of a GPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(GPU_MEMORY_FRACTION * free)
    return parse_memory_size(DEFAULT_CPU_MEMORY)


class Restorer:
    """Derains images with an ELF network: any size, tiled when needed, optionally self-ensembled.

    Args:
        model: the network (moved to `device`, put in eval mode).
        settings: how to run it (`derain.inference.InferenceSettings`: device, precision,
            max_memory, max_tile, self_ensemble, tile, overlap; `ckpt_path` is not read); a bare
            network holds no max_tile of its own, so max_tile="model" means none here
            (`load` takes the model's).
        retain_freed_memory: on CPU, make the process keep the memory it frees for reuse
            (`derain.runtime.memory.retain_freed_memory`: process-wide, glibc only), which makes
            each pass after the first much faster; tiles are then planned with
            `RETAINED_MEMORY_OVERHEAD` more memory per pass, so the peak stays within
            `max_memory`. `load` turns it on.
        **options: settings given one by one, replacing those of `settings`
            (`Restorer(model, device="cpu", tile=256)`).

    After each call, `last_plan` tells how the image was processed.
    """

    def __init__(
        self,
        model: ELF,
        settings: InferenceSettings | None = None,
        *,
        retain_freed_memory: bool = False,
        **options: Any,
    ) -> None:
        settings = (settings or InferenceSettings()).replace(**options)
        if settings.max_tile == MODEL_MAX_TILE:
            settings = settings.replace(max_tile=None)
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.retains_freed_memory = (
            retain_freed_memory and self.device.type == "cpu" and keep_freed_memory()
        )
        self.model = model.to(self.device).eval()
        self.multiple = model.multiple
        _check_tiling(settings.tile, settings.overlap, self.multiple)
        self.tile = settings.tile
        self.overlap = settings.overlap
        self.max_tile = settings.max_tile
        self.ensemble = _ensemble(settings.self_ensemble)
        self.precision = settings.precision
        self._autocast_dtype = _autocast_dtype(settings.precision, self.device)
        self.max_memory = _memory_budget(settings.max_memory, self.device)
        self.last_plan: TilePlan | None = None
        self._activation_bytes_per_pixel: float | None = None

    @property
    def activation_bytes_per_pixel(self) -> float:
        """Peak activation memory of one forward pass per input pixel (bytes), measured once
        with `derain.runtime.memory.peak_activation_bytes` on a 128² input; memory grows linearly
        with pixel count, so this predicts (slightly over) any larger size. With freed memory
        retained, `RETAINED_MEMORY_OVERHEAD` times that."""
        if self._activation_bytes_per_pixel is None:
            example = torch.rand(1, 3, _MEASURED_SIDE, _MEASURED_SIDE, device=self.device)
            peak = peak_activation_bytes(self.model, example)
            overhead = RETAINED_MEMORY_OVERHEAD if self.retains_freed_memory else 1.0
            self._activation_bytes_per_pixel = overhead * peak / _MEASURED_SIDE**2
        return self._activation_bytes_per_pixel

    def plan(self, height: int, width: int, batch: int = 1) -> TilePlan:
        """How a batch × 3 × height × width input would be processed (see `TilePlan`).

        Raises ValueError when `max_memory` cannot hold even the smallest tile.
        """
        buffers = batch * height * width * IMAGE_BUFFER_BYTES_PER_PIXEL
        tile = self.tile
        if tile is None:
            whole = buffers + self._pass_bytes(height, width, batch)
            small = self.max_tile is None or max(height, width) <= self.max_tile
            if whole <= self.max_memory and small:
                return TilePlan(
                    height, width, batch, None, (height, width), 1, 1, whole, self.max_memory
                )
            tile = self._largest_tile(height, width, batch, buffers)
            if self.max_tile is not None:
                tile = min(tile, self.max_tile)
        rows = axis_tiles(height, tile, self.overlap, self.multiple)
        cols = axis_tiles(width, tile, self.overlap, self.multiple)
        tile_shape = (rows[0][1], cols[0][1])
        estimate = buffers + self._pass_bytes(*tile_shape, batch)
        tiled = len(rows) * len(cols) > 1
        return TilePlan(
            height,
            width,
            batch,
            tile if tiled else None,
            tile_shape,
            len(rows),
            len(cols),
            estimate,
            self.max_memory,
        )

    def __call__(self, image: Any, progress: Progress | None = None) -> Any:
        """The derained image, of the input's kind: an H×W×3 NumPy array (uint8/uint16 → same
        dtype, float in [0, 1] → same float dtype; H×W or H×W×1 grey stays grey, the alpha of
        H×W×2 / H×W×4 comes back unchanged), a PIL image (→ the same mode for L, LA, RGB and
        RGBA, else RGB), or a torch tensor 3×H×W or B×3×H×W (uint8 or float in [0, 1]; → same
        shape, dtype and device). Float NaN/inf or values far outside [0, 1] raise ValueError.
        `progress(done, total)` hears of every network pass (see `Progress`)."""
        batch, to_input_kind = _as_batch(image, self.device)
        restored, _ = self.restore_batch(batch, progress=progress)
        return to_input_kind(restored)

    def separate(self, image: Any, progress: Progress | None = None) -> tuple[Any, Any]:
        """(derained image, rain layer), both of the input's kind (see `__call__`).

        The rain layer is what was removed: the input minus the derained image, clipped to
        [0, 1], whatever the network's head (its own rain layer can leave [0, 1] where the image
        is clipped, and then no longer adds up with the image to the input).
        """
        batch, to_input_kind = _as_batch(image, self.device)
        restored, rain = self.restore_batch(batch, with_rain=True, progress=progress)
        return to_input_kind(restored), to_input_kind(rain)

    def derain_file(
        self,
        source: str | os.PathLike,
        output: str | os.PathLike,
        rain_output: str | os.PathLike | None = None,
        quality: int = DEFAULT_QUALITY,
        progress: Progress | None = None,
    ) -> DerainedPhoto:
        """Derains the image file `source` into `output`, and its rain layer into `rain_output`
        when given, each in the format of its suffix.

        The output keeps what the file holds besides its colours wherever the format can hold
        it: colour profile, EXIF (orientation set upright, as the pixels are), alpha, grey and
        16 bits (`derain.inference.photo_files`); JPEG and WebP are written at `quality`.
        Files are written atomically. `progress` as in `__call__`.

        Raises:
            FileNotFoundError: `source` does not exist.
            ValueError: `source` cannot be decoded (`PhotoReadError`), or does not fit
                `max_memory` even in tiles.
        """
        photo = read_photo(source)
        restored = self(photo.pixels, progress=progress)
        if photo.grey:  # the network's RGB has small casts; grey photos stay grey
            restored = luminance_rgb(restored)
        rain = np.clip(photo.pixels - restored, 0.0, 1.0)
        lost = write_photo(output, photo.with_pixels(restored), quality)
        if rain_output is not None:
            write_photo(rain_output, Photo(rain, grey=photo.grey, bits=photo.bits), quality)
        return DerainedPhoto(photo, restored, rain, lost)

    def with_options(
        self, self_ensemble: bool | str = _UNCHANGED, max_memory: int | str | None = _UNCHANGED
    ) -> Restorer:
        """A restorer that shares this one's network (and its measured memory use) but uses
        another `self_ensemble` and/or `max_memory` (see the class); omitted ones are kept."""
        options = {"self_ensemble": self_ensemble, "max_memory": max_memory}
        other = copy.copy(self)
        other.settings = self.settings.replace(
            **{key: value for key, value in options.items() if value is not _UNCHANGED}
        )
        other.ensemble = _ensemble(other.settings.self_ensemble)
        other.max_memory = _memory_budget(other.settings.max_memory, self.device)
        other.last_plan = None
        return other

    def restore_batch(
        self, x: Tensor, with_rain: bool = False, progress: Progress | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Derains B×3×H×W float in [0, 1] on `self.device`; `progress` as in `__call__`.

        Returns (restored, rain): B×3×H×W float32 in [0, 1]; rain is None unless `with_rain`.
        """
        batch, _, height, width = x.shape
        plan = self.plan(height, width, batch)
        self.last_plan = plan
        predict = self._predict
        if progress is not None:
            passes = plan.tiles * (len(self.ensemble) if self.ensemble is not None else 1)
            predict = partial(_counted, predict, progress, itertools.count(1), passes)
            progress(0, passes)
        if self.ensemble is not None:
            predict = partial(ensemble_mean, predict, transforms=self.ensemble)
        with torch.inference_mode(), self._autocast():
            if plan.tile is None:
                out = predict(x).float()
            else:
                out = tiled_apply(predict, x, plan.tile, self.overlap, self.multiple)
            restored = out.clamp_(0.0, 1.0)
            if not with_rain:
                return restored, None
            return restored, (x - restored).clamp_(0.0, 1.0)

    def _predict(self, x: Tensor) -> Tensor:
        """B×3×H×W → restored B×3×H×W."""
        return self.model(x).image

    def _autocast(self):
        if self._autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def _pass_bytes(self, height: int, width: int, batch: int) -> int:
        """Activation bytes of one forward pass over batch × height × width (padded inside)."""
        pixels = round_up(height, self.multiple) * round_up(width, self.multiple)
        return math.ceil(batch * pixels * self.activation_bytes_per_pixel)

    def _largest_tile(self, height: int, width: int, batch: int, buffers: int) -> int:
        """The largest square tile side (a multiple of 16) whose pass fits the budget left over
        by the full-resolution buffers."""
        smallest = round_up(2 * self.overlap + 1, self.multiple)
        available = self.max_memory - buffers
        side = math.isqrt(max(0, int(available / (batch * self.activation_bytes_per_pixel))))
        tile = side // self.multiple * self.multiple
        if tile < smallest:
            needed = buffers + self._pass_bytes(smallest, smallest, batch)
            raise ValueError(
                f"max_memory={_format_bytes(self.max_memory)} is too small for a "
                f"{batch}×3×{height}×{width} image: its full-resolution buffers take "
                f"{_format_bytes(buffers)} and the smallest tile ({smallest}² pixels for "
                f"overlap={self.overlap}) another {_format_bytes(needed - buffers)}; raise "
                f"max_memory to at least {_format_bytes(needed)} or lower overlap"
            )
        return tile


def load(
    source: str | os.PathLike | None = None,
    settings: InferenceSettings | None = None,
    *,
    retain_freed_memory: bool = True,
    **options: Any,
) -> Restorer:
    """A `Restorer` for the network `source` names: None (the bundled default model), a
    bundled model's short name, a model folder, a derain `.ckpt`/`.safetensors` file or one of
    the authors' checkpoints (`derain.inference.sources.resolve_model`); None takes
    `settings.ckpt_path`.

    Files are read without running code from them (`derain.inference.checkpoint.load_network`).
    `settings` (`InferenceSettings`; its defaults when None) and `**options`, which replace its
    fields one by one (`load("m.ckpt", device="cpu", self_ensemble="flips")`), say how to run
    it: `max_tile="model"` (the default) takes the model's own (none for most checkpoints; the
    bundled model's card gives its), None lifts it, a number replaces it.
    `retain_freed_memory` (on by default here: several times faster on CPU, within
    `max_memory`) is `Restorer`'s.
    """
    settings = (settings or InferenceSettings()).replace(**options)
    if source is not None:
        settings = settings.replace(ckpt_path=os.fspath(source))
    device = resolve_device(settings.device)
    stored = load_network(settings.ckpt_path, device)
    max_tile = stored.chosen_max_tile(settings.max_tile)
    return Restorer(
        stored.model,
        settings.replace(max_tile=max_tile),
        retain_freed_memory=retain_freed_memory,
    )


def _ensemble(self_ensemble: bool | str) -> tuple[tuple[int, bool], ...] | None:
    """The transforms `self_ensemble` names (`self_ensemble_name`); None for one pass."""
    name = self_ensemble_name(self_ensemble)
    return ensemble_transforms(name) if name is not None else None


def _memory_budget(max_memory: int | str | None, device: torch.device) -> int:
    return (
        parse_memory_size(max_memory) if max_memory is not None else default_memory_budget(device)
    )


def _counted(
    predict: Callable[[Tensor], Tensor],
    progress: Progress,
    done: itertools.count,
    total: int,
    x: Tensor,
) -> Tensor:
    """`predict(x)`, then `progress(passes done, total)`."""
    out = predict(x)
    progress(next(done), total)
    return out


def _check_tiling(tile: int | None, overlap: int, multiple: int) -> None:
    if tile is not None and (tile % multiple or tile <= 2 * overlap):
        smallest = round_up(2 * overlap + 1, multiple)
        raise ValueError(
            f"tile={tile} must be a multiple of {multiple} larger than 2 × overlap "
            f"(overlap={overlap}), e.g. tile={max(smallest, round_up(tile, multiple))}; "
            "or tile=null to choose tiles from max_memory"
        )


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    dtype = PRECISIONS[precision]  # a known name: InferenceSettings checked it
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError(
            f"precision={precision} needs a CUDA device, but the device is {device}: "
            "use precision=bf16-mixed or precision=32-true on CPU"
        )
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision={precision} is not supported by {device}: use precision=16-mixed or 32-true"
        )
    return dtype


def _as_batch(image: Any, device: torch.device) -> tuple[Tensor, Callable[[Tensor], Any]]:
    """A B×3×H×W float32 tensor in [0, 1] on `device`, and the function that turns a result of
    that shape back into the kind, dtype and device of `image`."""
    if isinstance(image, Tensor):
        return _tensor_batch(image, device)
    if isinstance(image, Image.Image):
        if image.mode not in _PIL_MODES:
            image = image.convert(
                "RGBA" if "A" in image.mode or "transparency" in image.info else "RGB"
            )
        batch, to_array = _array_batch(np.asarray(image), device)
        return batch, lambda out: Image.fromarray(to_array(out))
    if isinstance(image, np.ndarray):
        return _array_batch(image, device)
    raise TypeError(
        f"cannot derain a {type(image).__name__}: give an H×W×3 NumPy array, a PIL image, or a "
        "3×H×W / B×3×H×W torch tensor"
    )


_PIL_MODES = ("L", "LA", "RGB", "RGBA")
"""PIL modes derained as they are (others are converted to RGB or RGBA first)."""


def _array_batch(array: np.ndarray, device: torch.device) -> tuple[Tensor, Callable]:
    """H×W (grey), H×W×1 (grey), H×W×2 (grey + alpha), H×W×3 (RGB) or H×W×4 (RGBA): the
    colour goes through the network as RGB, grey comes back grey (the luminance of the result)
    and alpha comes back unchanged."""
    shape = array.shape
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"expected an H×W grey or H×W×3 RGB array (×1 grey, ×2 grey+alpha and ×4 RGBA are "
            f"taken too), got shape {shape}"
        )
    if np.issubdtype(array.dtype, np.integer):
        if array.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected a uint8, uint16 or float array, got {array.dtype}")
        scale = float(np.iinfo(array.dtype).max)
        values = torch.from_numpy(array.astype(np.float32) / np.float32(scale))
    elif np.issubdtype(array.dtype, np.floating):
        # a copy: from_numpy would share memory, and takes no negative strides (img[..., ::-1])
        values = _checked_float(torch.from_numpy(np.array(array, np.float32)), "array")
    else:
        raise ValueError(f"expected a uint8, uint16 or float array, got {array.dtype}")
    colours = 1 if array.shape[2] in (1, 2) else 3
    alpha = values[:, :, colours:]
    rgb = values[:, :, :colours].expand(-1, -1, 3)
    batch = rgb.permute(2, 0, 1).unsqueeze(0).to(device)

    def to_array(out: Tensor) -> np.ndarray:
        result = out[0].permute(1, 2, 0).cpu().numpy()
        if colours == 1:
            result = luminance(result)[:, :, None]
        result = np.concatenate([result, alpha.numpy()], axis=2).reshape(shape)
        if np.issubdtype(array.dtype, np.integer):
            return np.round(result * scale).astype(array.dtype)
        return result.astype(array.dtype, copy=False)

    return batch, to_array


def _checked_float(values: Tensor, kind: str) -> Tensor:
    """Float pixels clipped to [0, 1], after refusing those the network would silently turn into
    garbage: NaN or infinite ones (they spread to the whole output) and values far outside
    [0, 1] (an image in [0, 255])."""
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"the {kind} has {bad} NaN or infinite value(s) of {values.numel()}: they would "
            "spread over the whole result; replace them first, e.g. np.nan_to_num(image)"
        )
    if values.numel() == 0:
        return values
    low, high = float(values.min()), float(values.max())
    if high > FLOAT_RANGE_SLACK + 1.0 or low < -FLOAT_RANGE_SLACK:
        raise ValueError(
            f"float images must be in [0, 1], but this {kind}'s values span [{low:g}, {high:g}]: "
            + (
                "divide an image in [0, 255] by 255 (or pass it as uint8)"
                if high > 2.0
                else "rescale it to [0, 1]"
            )
        )
    return values.clamp(0.0, 1.0)


def _tensor_batch(tensor: Tensor, device: torch.device) -> tuple[Tensor, Callable]:
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"expected a 3×H×W or B×3×H×W RGB tensor, got shape {tuple(tensor.shape)}")
    if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
        raise ValueError(f"expected a uint8 or float tensor in [0, 1], got {tensor.dtype}")
    batch = tensor if tensor.ndim == 4 else tensor.unsqueeze(0)
    batch = batch.to(device, torch.float32)
    if tensor.is_floating_point():
        batch = _checked_float(batch, "tensor")
    if tensor.dtype == torch.uint8:
        batch = batch / 255.0

    def to_tensor(out: Tensor) -> Tensor:
        out = out if tensor.ndim == 4 else out[0]
        if tensor.dtype == torch.uint8:
            out = (out * 255.0).round()
        return out.to(tensor.device, tensor.dtype)

    return batch, to_tensor


def _format_bytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"

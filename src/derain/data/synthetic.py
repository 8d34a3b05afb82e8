"""Synthetic rain: the additive streak model of Rain100L/H (Yang et al., JORDER, CVPR 2017),
extended to look like rain in photos.

    O = clip(B + R)                          light rain
    O = clip(T · (B + R) + (1 − T) · A)      heavy rain with haze

B is the clean photo, R the streak layer (sparse seeds convolved with an anti-aliased line
kernel, one or more layers of different directions), T a transmission and A the atmospheric
light. Beyond the papers' model, a `RainConfig` can draw the rain at a larger scale (the long,
wide, soft streaks of full-HD and phone photos), out of focus, save the rainy input as JPEG (the
clean target stays lossless), and leave a share of samples rain-free (input = target).

Every random choice comes from `numpy.random.default_rng([seed, *key])`, so an image depends
only on (seed, key), never on worker count, call order or device. Rendering is tensor code
(torch FFT convolution, kornia blur and resizing) that runs on the CPU or, with `device`, on a
GPU.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import kornia
import numpy as np
import torch
from PIL import Image
from scipy.fft import next_fast_len

from derain.data.io import to_uint8

Range = tuple[float, float]

_FFT_NOISE = 1e-4


@dataclass(frozen=True)
class RainConfig:
    """Ranges (low, high) the generator draws from uniformly.

    Attributes:
        layers: number of streak layers per image (integers, both ends included).
        density: per layer, probability that a (rendered) pixel seeds a streak.
        seed_value: brightness of each seed before the layer is peak-normalised.
        length: per layer, streak length in rendered pixels.
        angle: per image, base direction in degrees from vertical (positive leans right).
        layer_angle: per layer, offset in degrees added to the base direction.
        width: per layer, streak thickness in rendered pixels (Gaussian profile across the
            streak with σ = width / 2; 1 is a thin anti-aliased line).
        intensity: per layer, the layer's peak value after normalisation.
        transmission: per image, haze transmission T; None for no haze.
        atmospheric_light: per image, haze colour A (grey), used only with `transmission`.
        scale: per image, size of the rain against the image: the streak layer is rendered at
            1/scale of the image's resolution and resized to it, so streak length, width and
            spacing grow by `scale` (1: the papers' rain; 3–6: rain as it looks in a full-HD
            photo).
        defocus: per layer, σ in rendered pixels of a Gaussian blur for rain seen out of focus
            (0: sharp), applied before the peak normalisation so blurred streaks stay visible.
        jpeg_share: probability that the rainy input is saved as JPEG (the clean target is not).
        jpeg_quality: JPEG quality range (integers, both ends included).
        rain_free: probability that a sample has no rain at all: input = target (both through
            JPEG when the sample is a JPEG one, as a photo that came as JPEG).
    """

    layers: tuple[int, int] = (1, 1)
    density: Range = (0.0018, 0.0035)
    seed_value: Range = (0.6, 1.0)
    length: Range = (15.0, 30.0)
    angle: Range = (-15.0, 15.0)
    layer_angle: Range = (0.0, 0.0)
    width: Range = (1.0, 1.0)
    intensity: Range = (0.4, 0.7)
    transmission: Range | None = None
    atmospheric_light: Range = (0.75, 0.95)
    scale: Range = (1.0, 1.0)
    defocus: Range = (0.0, 0.0)
    jpeg_share: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)
    rain_free: float = 0.0

    def __post_init__(self) -> None:
        for name in ("jpeg_share", "rain_free"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(
                    f"rain setting {name} must be a probability in [0, 1], got {value}"
                )
        if min(self.scale) <= 0:
            raise ValueError(f"rain setting scale must be positive, got {self.scale}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(
                f"rain setting jpeg_quality must be (low, high) with 1 <= low <= high <= 100, "
                f"got {self.jpeg_quality}"
            )


LIGHT_RAIN = RainConfig()
"""Rain100L-like: one layer of thin, sparse streaks, no haze. On skimage's astronaut (512²) the
rainy input scores 28.2 ± 1.6 dB PSNR on the rounded BT.601 Y channel (the papers' protocol;
about 1.4 dB lower on RGB), mean ± std over 30 draws."""

HEAVY_RAIN = RainConfig(
    layers=(3, 5),
    density=(0.003, 0.008),
    length=(20.0, 50.0),
    angle=(-30.0, 30.0),
    layer_angle=(-20.0, 20.0),
    width=(1.0, 3.0),
    intensity=(0.35, 0.8),
    transmission=(0.6, 0.85),
    atmospheric_light=(0.75, 0.95),
)
"""Rain100H-like: 3–5 crossing layers of long, wide streaks under haze. On astronaut the rainy
input scores 12.1 ± 1.5 dB PSNR on the rounded BT.601 Y channel (about 1.4 dB lower on RGB),
mean ± std over 30 draws."""

LARGE_RAIN = RainConfig(
    layers=(1, 2),
    density=(0.002, 0.005),
    length=(12.0, 30.0),
    angle=(-20.0, 20.0),
    layer_angle=(-10.0, 10.0),
    width=(1.0, 2.0),
    intensity=(0.25, 0.6),
    scale=(2.5, 5.0),
    defocus=(0.0, 1.0),
)
"""Rain at the scale it has in a 1920×1080 photo: one or two layers of streaks 30–150 pixels
long and 2.5–10 wide, softened, some out of focus, no haze."""

DEFOCUS_RAIN = RainConfig(
    layers=(1, 2),
    density=(0.001, 0.003),
    length=(6.0, 20.0),
    angle=(-20.0, 20.0),
    width=(1.0, 3.0),
    intensity=(0.15, 0.45),
    scale=(1.0, 3.0),
    defocus=(1.5, 4.0),
)
"""Rain seen out of focus, close to the lens: sparse, soft, faint blobs and short smears."""

RAIN_PRESETS: dict[str, RainConfig] = {
    "light": LIGHT_RAIN,
    "heavy": HEAVY_RAIN,
    "large": LARGE_RAIN,
    "defocus": DEFOCUS_RAIN,
}


def rain_preset(name: str) -> RainConfig:
    """The `RainConfig` called `name` in `RAIN_PRESETS`; a ValueError lists the names otherwise."""
    try:
        return RAIN_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown rain preset {name!r}: expected one of {', '.join(RAIN_PRESETS)}"
        ) from None


def rain_config(preset: str | RainConfig, **options: Any) -> RainConfig:
    """A preset (by name or as a `RainConfig`) with some of its settings replaced.

    `options` are `RainConfig` fields (lists become tuples, as Hydra gives lists); an unknown
    name is a ValueError listing the valid ones.
    """
    config = rain_preset(preset) if isinstance(preset, str) else preset
    names = {f for f in RainConfig.__dataclass_fields__}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(
            f"unknown rain setting(s) {', '.join(unknown)}: expected some of {', '.join(sorted(names))}"
        )
    values = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in options.items()}
    return replace(config, **values)


@dataclass
class RainSample:
    """One synthetic example; the three images are H×W×3 float32 in [0, 1].

    `rain` is the streak layer R (equal in the three channels). Without haze and JPEG,
    rainy − clean == rain wherever rainy did not clip at 1.
    """

    rainy: np.ndarray
    clean: np.ndarray
    rain: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


def streak_kernel(
    length: float, angle: float, width: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Peak-normalised (max 1) kernel of a line segment, float32, odd-sized.

    Written out rather than taken from kornia's motion kernel, which has an integer length,
    a one-pixel width and a rasterised profile: streaks here have sub-pixel lengths, Gaussian
    widths and anti-aliased edges.

    Args:
        length: segment length in pixels.
        angle: direction in degrees from vertical.
        width: thickness; the profile across the line is a Gaussian with σ = width / 2.
    """
    sigma = width / 2.0
    theta = math.radians(angle)
    down, right = math.cos(theta), math.sin(theta)  # (row, column) along the streak
    half_rows = math.ceil(abs(down) * length / 2 + 3 * sigma)
    half_cols = math.ceil(abs(right) * length / 2 + 3 * sigma)
    rows = torch.arange(-half_rows, half_rows + 1, device=device, dtype=torch.float64)[:, None]
    cols = torch.arange(-half_cols, half_cols + 1, device=device, dtype=torch.float64)[None, :]
    along = (rows * down + cols * right).clamp(-length / 2, length / 2)
    distance_sq = (rows - along * down) ** 2 + (cols - along * right) ** 2
    kernel = torch.exp(-distance_sq / (2 * sigma**2))
    return (kernel / kernel.max()).float()


def convolve_valid(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The 'valid' part of the 2-D convolution of image (H×W) with kernel (h×w), by FFT.

    torch has no N-d FFT convolution; a circular convolution at least the image's size is
    exact on the valid region, which is all the streaks need. Sizes are rounded up to ones
    with small prime factors, which the FFT handles fastest.
    """
    size = tuple(next_fast_len(n, real=True) for n in image.shape)
    spectrum = torch.fft.rfft2(image, s=size) * torch.fft.rfft2(kernel, s=size)
    full = torch.fft.irfft2(spectrum, s=size)
    return full[kernel.shape[0] - 1 : image.shape[0], kernel.shape[1] - 1 : image.shape[1]]


class SyntheticRain:
    """Renders rain onto clean images, deterministically per (seed, key).

    Args:
        config: a `RainConfig` or a preset name ("light", "heavy", "large", "defocus").
        seed: the generator seed; (seed, key) fixes every random draw.
        device: where the tensors are rendered ("cpu", "cuda"...); the draws stay on the CPU,
            so a sample depends on (seed, key) alone.
    """

    def __init__(
        self, config: RainConfig | str = "light", seed: int = 0, device: str | torch.device = "cpu"
    ) -> None:
        self.config = rain_preset(config) if isinstance(config, str) else config
        self.seed = seed
        self.device = torch.device(device)

    def __call__(
        self, clean: np.ndarray, key: int | Sequence[int], quantize: bool = False
    ) -> RainSample:
        """Rain on `clean` (H×W×3 float in [0, 1]) drawn from `default_rng([seed, *key])`;
        `key` is a non-negative integer or a sequence of them."""
        keys = [key] if isinstance(key, int | np.integer) else list(key)
        rng = np.random.default_rng([self.seed, *keys])
        return self.render(clean, rng, quantize=quantize)

    def render(
        self, clean: np.ndarray, rng: np.random.Generator, quantize: bool = False
    ) -> RainSample:
        """Rain on `clean` (H×W×3 float in [0, 1]) with the draws of `rng`.

        With `quantize`, B and R are first rounded to 8-bit levels, so that the rainy image is
        8-bit exact too and rainy − clean == rain holds exactly in saved 8-bit files. JPEG
        samples are 8-bit exact whatever `quantize` says.
        """
        image = torch.from_numpy(np.array(clean, dtype=np.float32).transpose(2, 0, 1))
        rainy, target, rain, params = self._render(image.to(self.device), rng, quantize)
        return RainSample(
            rainy=_to_numpy(rainy), clean=_to_numpy(target), rain=_to_numpy(rain), params=params
        )

    def render_tensor(
        self, clean: torch.Tensor, rng: np.random.Generator, quantize: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Rain on `clean` (3×H×W float tensor in [0, 1], on any device) with the draws of `rng`.

        Returns:
            rainy, clean and rain (3×H×W float32 on clean's device; `clean` is the target,
            rounded to 8 bits with `quantize` and JPEG-compressed in rain-free JPEG samples),
            and the values drawn.
        """
        rainy, clean, rain, params = self._render(clean, rng, quantize)
        return rainy, clean, rain.contiguous(), params

    def _render(
        self, clean: torch.Tensor, rng: np.random.Generator, quantize: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """`render_tensor`, with the rain layer left as a 3-channel view of one plane."""
        config = self.config
        # the photo-like options draw from a child stream: the papers' presets keep their draws
        options = rng.spawn(1)[0]
        rain_free = bool(options.random() < config.rain_free)
        jpeg_quality = (
            int(options.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
            if options.random() < config.jpeg_share
            else None
        )
        clean = clean.float()
        height, width = clean.shape[-2:]
        if quantize:
            clean = _quantize(clean)
        params: dict[str, Any] = {"rain_free": rain_free, "jpeg_quality": jpeg_quality}
        if rain_free:
            if jpeg_quality is not None:
                clean = jpeg(clean, jpeg_quality)
            return clean, clean, torch.zeros_like(clean), params
        scale = float(options.uniform(*config.scale))
        streaks, layer_params = self._rain_layer(height, width, scale, rng, options)
        params.update(layer_params, scale=scale)
        if quantize:
            streaks = _quantize(streaks)
        rain = streaks.expand(3, height, width)
        rainy = clean + rain
        if config.transmission is not None:
            transmission = float(rng.uniform(*config.transmission))
            light = float(rng.uniform(*config.atmospheric_light))
            rainy = transmission * rainy + (1.0 - transmission) * light
            params.update(transmission=transmission, atmospheric_light=light)
        rainy = rainy.clamp(0.0, 1.0)
        if quantize and config.transmission is not None:
            rainy = _quantize(rainy)
        if jpeg_quality is not None:
            rainy = jpeg(rainy, jpeg_quality)
        return rainy, clean, rain, params

    def _rain_layer(
        self,
        height: int,
        width: int,
        scale: float,
        rng: np.random.Generator,
        options: np.random.Generator,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """1×H×W streak layer in [0, 1] and the values drawn for it."""
        config = self.config
        rendered = (max(1, math.ceil(height / scale)), max(1, math.ceil(width / scale)))
        base_angle = float(rng.uniform(*config.angle))
        layers = int(rng.integers(config.layers[0], config.layers[1] + 1))
        total = torch.zeros(rendered, device=self.device)
        layer_params = []
        for _ in range(layers):
            layer = {
                "density": float(rng.uniform(*config.density)),
                "length": float(rng.uniform(*config.length)),
                "angle": base_angle + float(rng.uniform(*config.layer_angle)),
                "width": float(rng.uniform(*config.width)),
                "intensity": float(rng.uniform(*config.intensity)),
                "defocus": float(options.uniform(*config.defocus)),
            }
            kernel = streak_kernel(layer["length"], layer["angle"], layer["width"], self.device)
            # seeds on a canvas larger by the kernel, so streaks enter across the border
            canvas = (rendered[0] + kernel.shape[0] - 1, rendered[1] + kernel.shape[1] - 1)
            count = int(rng.binomial(canvas[0] * canvas[1], layer["density"]))
            values = rng.uniform(*config.seed_value, count).astype(np.float32)
            positions = rng.integers(0, canvas[0] * canvas[1], count)
            # seeds are placed in NumPy (a repeated position keeps its last value, on any device)
            seeds = np.zeros(canvas[0] * canvas[1], dtype=np.float32)
            seeds[positions] = values
            streaks = convolve_valid(
                torch.from_numpy(seeds.reshape(canvas)).to(self.device), kernel
            )
            if layer["defocus"] > 0:
                streaks = _blur(streaks, layer["defocus"])
            peak = float(streaks.max())
            if peak > 0:
                # FFT round-off leaves ~1e-7 everywhere; keep the layer exactly zero off-streak
                streaks = torch.where(streaks < _FFT_NOISE * peak, 0.0, streaks)
                total += streaks * (layer["intensity"] / peak)
            layer_params.append(layer)
        total = total.clamp(0.0, 1.0)[None]
        if rendered != (height, width):
            total = kornia.geometry.transform.resize(
                total[None], (height, width), interpolation="bilinear", antialias=True
            )[0].clamp(0.0, 1.0)
        return total, {"base_angle": base_angle, "layers": layer_params}


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """3×H×W float image in [0, 1] saved as a JPEG of `quality` and read back (8-bit exact).

    On the CPU this is the real encoder (Pillow's libjpeg, 4:2:0 like phone and web photos);
    on other devices kornia's differentiable JPEG, which keeps the data on the device and
    differs from it by about 45 dB PSNR, stands in.
    """
    if image.device.type != "cpu":
        quality_tensor = torch.tensor([float(quality)], device=image.device)
        decoded = kornia.enhance.jpeg_codec_differentiable(image[None], quality_tensor)[0]
        return _quantize(decoded.clamp(0.0, 1.0))
    pixels = to_uint8(image.permute(1, 2, 0).numpy())
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / np.float32(255.0)
    return torch.from_numpy(decoded.transpose(2, 0, 1).copy())


def config_as_dict(config: RainConfig) -> dict[str, Any]:
    """A JSON-ready copy of a `RainConfig` (tuples become lists)."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in asdict(config).items()
    }


def _blur(layer: torch.Tensor, sigma: float) -> torch.Tensor:
    size = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(
        layer[None, None], (size, size), (sigma, sigma), border_type="constant"
    )[0, 0]


def _quantize(image: torch.Tensor) -> torch.Tensor:
    """Round to the nearest 8-bit level, staying float32 in [0, 1]."""
    return torch.floor(image.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0  # halves up, as to_uint8


def _to_numpy(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(image.detach().cpu().permute(1, 2, 0).numpy(), dtype=np.float32)

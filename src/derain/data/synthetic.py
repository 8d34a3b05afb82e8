"""Synthetic rain: the additive streak model of Rain100L/H (Yang et al., JORDER, CVPR 2017),
extended to look like rain in photos.

    O = clip(B + R)                          light rain
    O = clip(T · (B + R) + (1 − T) · A)      heavy rain with haze

B is the clean photo, R the streak layer (sparse seeds convolved with an anti-aliased line
kernel, one or more layers of different directions), T a transmission and A the atmospheric
light. Beyond the papers' model, a `RainConfig` can draw the rain at a larger scale (the long,
wide, soft streaks of full-HD and phone photos), out of focus, save the rainy input as JPEG (the
clean target stays lossless), and leave a share of samples rain-free (input = target).

Public rain sets were rendered in different ways, so the generator has several *families*
(`RAIN_FAMILIES`), each a group of presets: "streak" (the papers' additive model above: light,
heavy, large), "screen" (the image-editor recipe most benchmark sets used: blurred noise cut to
its brightest specks by levels, motion-blurred along the rain and *screened* onto the photo),
"veil" (dense rain under an accumulation veil that follows the scene: thicker far away, the
colour of the photo's own sky) and "depth" (fine dense far streaks and large, soft, sparse near
ones in one image). A training mix names families or presets; leaving one family out measures
transfer to rain the model was not made from. Painted opaque lines (`scene_lines`) and patches
of parallel bars (`scene_patterns`: fences, window frames, railings) belong to the scene and stay
in the target, so a model learns that a pole, a wire or a picket is not rain.

Every random choice comes from `numpy.random.default_rng([seed, *key])`, so an image depends
only on (seed, key), never on worker count, call order or device. Rendering is tensor code
(torch FFT convolution, kornia blur and resizing) that runs on the CPU or, with `device`, on a
GPU.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist
from typing import Any

import kornia
import numpy as np
import torch
from PIL import Image
from scipy.fft import next_fast_len

from derain.data.io import to_uint8

Range = tuple[float, float]

_FFT_NOISE = 1e-4

PATTERN_PERIOD: Range = (3.0, 28.0)
"""Pixels between the bars of a painted pattern (`paint_pattern`)."""
WIDEST_BAR = PATTERN_PERIOD[1] / 2
"""A painted bar is at most half its period wide: `pattern_bar_max` at this value sets no limit."""


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
        seeds: how a layer's streaks start: "sparse" (each rendered pixel seeds a streak with
            probability `density`, the papers' model) or "noise" (the image-editor recipe:
            Gaussian noise blurred by `noise_blur`, levels keeping its brightest `density`
            share, so specks vary in size and brightness).
        noise_blur: per layer, σ in rendered pixels of the blur of "noise" seeds.
        blend: how rain meets the photo: "add" (O = B + R) or "screen"
            (O = 1 − (1 − B)(1 − R), the image editors' blend: rain shows less on bright areas).
        haze: with `transmission`, "uniform" (one T and a grey A everywhere, the papers' model)
            or "scene" (rain accumulation: T falls with a depth guess, more veil towards the top
            and in a smooth random field; A is the colour of the photo's brightest region mixed
            with grey, so a bright sky is not what rain looks like).
        layer_scale: per layer, its own `scale` (overriding the per-image one): rain at depth.
            Layers drawn larger are nearer: their streaks are longer, wider and sparser.
        near_defocus: σ in rendered pixels of the blur added per unit of a layer's scale above
            1 (near rain is out of focus); 0 for none.
        scene_lines: probability that opaque straight lines (poles, wires, masts, edges of
            façades) are painted into the photo before the rain; they are part of the clean
            target, in rain-free samples too.
        scene_line_count: number of lines in such a sample (integers, both ends included).
        scene_patterns: probability that a patch of opaque parallel bars (fence pickets,
            window frames and shutters, railings, blinds) is painted into the photo before
            the rain; part of the clean target, like `scene_lines`. Bright, thin, near-vertical
            and repeated, they are what a model trained on streaks alone dims or smears most.
        pattern_backing: probability that such a patch is painted on a flat fill of the
            opposite brightness (dark glass behind white window frames), the contrast at which
            thin bars are most often taken for rain.
        pattern_bar_max: the widest painted bar in pixels (bars are drawn 1 pixel to half
            their period wide, at most this). The default, `WIDEST_BAR` (14), is half the
            longest period: no limit. A smaller one keeps painted bars apart from wide near streaks (`large`).
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
    seeds: str = "sparse"
    noise_blur: Range = (0.5, 1.0)
    blend: str = "add"
    haze: str = "uniform"
    layer_scale: Range | None = None
    near_defocus: float = 0.0
    scene_lines: float = 0.0
    scene_line_count: tuple[int, int] = (1, 4)
    scene_patterns: float = 0.0
    pattern_backing: float = 0.0
    pattern_bar_max: float = WIDEST_BAR

    def __post_init__(self) -> None:
        for name, allowed in (
            ("seeds", ("sparse", "noise")),
            ("blend", ("add", "screen")),
            ("haze", ("uniform", "scene")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"rain setting {name} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        if self.layer_scale is not None and min(self.layer_scale) < 1:
            raise ValueError(f"rain setting layer_scale must be at least 1, got {self.layer_scale}")
        if not 0 <= self.scene_line_count[0] <= self.scene_line_count[1]:
            raise ValueError(
                f"rain setting scene_line_count must be (low, high) with 0 <= low <= high, "
                f"got {self.scene_line_count}"
            )
        for name in (
            "jpeg_share",
            "rain_free",
            "scene_lines",
            "scene_patterns",
            "pattern_backing",
        ):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(
                    f"rain setting {name} must be a probability in [0, 1], got {value}"
                )
        if self.pattern_bar_max < 1:
            raise ValueError(
                f"rain setting pattern_bar_max must be at least 1 (pixel), got {self.pattern_bar_max}"
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

SCREEN_RAIN = RainConfig(
    layers=(1, 4),
    density=(0.01, 0.06),
    length=(8.0, 50.0),
    angle=(-40.0, 40.0),
    layer_angle=(-15.0, 15.0),
    width=(1.0, 2.5),
    intensity=(0.35, 1.0),
    seeds="noise",
    noise_blur=(0.4, 1.2),
    blend="screen",
)
"""The image-editor recipe of most benchmark sets (Rain800, Rain1400, Rain12): specks from
blurred noise cut by levels, motion-blurred along the rain, screened onto the photo; one to four
directions, sparse to dense, short to long."""

VEIL_RAIN = RainConfig(
    layers=(2, 4),
    density=(0.006, 0.02),
    length=(8.0, 35.0),
    angle=(-25.0, 25.0),
    layer_angle=(-10.0, 10.0),
    width=(1.0, 2.0),
    intensity=(0.2, 0.55),
    transmission=(0.45, 0.85),
    atmospheric_light=(0.7, 0.95),
    haze="scene",
)
"""Dense heavy rain under a veil of accumulation that follows the scene (thicker far away, the
colour of the photo's sky)."""

DEPTH_RAIN = RainConfig(
    layers=(3, 5),
    density=(0.003, 0.01),
    length=(10.0, 30.0),
    angle=(-25.0, 25.0),
    layer_angle=(-8.0, 8.0),
    width=(1.0, 2.0),
    intensity=(0.25, 0.7),
    layer_scale=(1.0, 5.0),
    near_defocus=0.4,
)
"""Rain at several depths in one image: far streaks fine and dense, near streaks large, soft and
sparse (each layer at its own scale, blurred by its nearness)."""

RAIN_PRESETS: dict[str, RainConfig] = {
    "light": LIGHT_RAIN,
    "heavy": HEAVY_RAIN,
    "large": LARGE_RAIN,
    "defocus": DEFOCUS_RAIN,
    "screen": SCREEN_RAIN,
    "veil": VEIL_RAIN,
    "depth": DEPTH_RAIN,
}

RAIN_FAMILIES: dict[str, tuple[str, ...]] = {
    "streak": ("light", "heavy", "large"),
    "screen": ("screen",),
    "veil": ("veil",),
    "depth": ("depth",),
}
"""Groups of presets rendered the same way; a training mix may name a family for its presets.
("defocus" belongs to none: its faint blobs look like image content, see
conf/experiment/default_model.yaml.)"""


def rain_preset(name: str) -> RainConfig:
    """The `RainConfig` called `name` in `RAIN_PRESETS`; a ValueError lists the names otherwise."""
    try:
        return RAIN_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown rain preset {name!r}: expected one of {', '.join(RAIN_PRESETS)}"
        ) from None


def expand_presets(
    names: Iterable[str], holdout: Iterable[str] | str | None = ()
) -> tuple[str, ...]:
    """Preset names for a mix of presets and families, in order (a family gives its presets),
    without the presets of the `holdout` families (one name, several, or None / "none").

    Raises:
        ValueError: an unknown name (the message lists presets and families), a holdout that is
            not a family, or nothing left.
    """
    if holdout is None or holdout == "none":
        holdout = ()
    elif isinstance(holdout, str):
        holdout = (holdout,)
    names, holdout = list(names), list(holdout)
    unknown = [name for name in holdout if name not in RAIN_FAMILIES]
    if unknown:
        raise ValueError(
            f"unknown rain family {', '.join(unknown)} to hold out: expected some of "
            f"{', '.join(RAIN_FAMILIES)}"
        )
    excluded = {preset for family in holdout for preset in RAIN_FAMILIES[family]}
    presets: list[str] = []
    for name in names:
        if name in RAIN_FAMILIES:
            presets.extend(RAIN_FAMILIES[name])
        elif name in RAIN_PRESETS:
            presets.append(name)
        else:
            raise ValueError(
                f"unknown rain preset or family {name!r}: presets are {', '.join(RAIN_PRESETS)}; "
                f"families are {', '.join(RAIN_FAMILIES)}"
            )
    kept = tuple(preset for preset in presets if preset not in excluded)
    if not kept:
        raise ValueError(
            f"no rain left: {', '.join(names)} without the held-out {', '.join(holdout)}"
        )
    return kept


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
        # the photo-like options draw from child streams: the papers' presets keep their draws
        options = rng.spawn(1)[0]
        extras = rng.spawn(1)[0]
        rain_free = bool(options.random() < config.rain_free)
        jpeg_quality = (
            int(options.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
            if options.random() < config.jpeg_share
            else None
        )
        clean = clean.float()
        height, width = clean.shape[-2:]
        params: dict[str, Any] = {"rain_free": rain_free, "jpeg_quality": jpeg_quality}
        if extras.random() < config.scene_lines:
            clean, lines = paint_lines(clean, extras, config.scene_line_count)
            params["scene_lines"] = lines
        if config.scene_patterns > 0:
            # a stream of its own, spawned only here: every other draw stays as it was
            patterns = rng.spawn(1)[0]
            if patterns.random() < config.scene_patterns:
                clean, pattern = paint_pattern(
                    clean, patterns, config.pattern_backing, config.pattern_bar_max
                )
                params["scene_pattern"] = pattern
        if quantize:
            clean = _quantize(clean)
        if rain_free:
            if jpeg_quality is not None:
                clean = jpeg(clean, jpeg_quality)
            return clean, clean, torch.zeros_like(clean), params
        scale = float(options.uniform(*config.scale))
        streaks, layer_params = self._rain_layer(height, width, scale, rng, options, extras)
        params.update(layer_params, scale=scale)
        if quantize:
            streaks = _quantize(streaks)
        rain = streaks.expand(3, height, width)
        rainy = clean + rain if config.blend == "add" else clean + rain - clean * rain
        if config.transmission is not None:
            transmission = float(rng.uniform(*config.transmission))
            light = float(rng.uniform(*config.atmospheric_light))
            if config.haze == "scene":
                veil, colour = scene_haze(clean, transmission, light, extras)
                rainy = veil * rainy + (1.0 - veil) * colour
                params.update(atmospheric_colour=colour.flatten().tolist())
            else:
                rainy = transmission * rainy + (1.0 - transmission) * light
            params.update(transmission=transmission, atmospheric_light=light)
        rainy = rainy.clamp(0.0, 1.0)
        if quantize and (config.transmission is not None or config.blend != "add"):
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
        extras: np.random.Generator,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """1×H×W streak layer in [0, 1] and the values drawn for it.

        Layers share one grid rendered at 1/scale of the image, or, with `layer_scale`, each
        is rendered at its own scale and resized before they are added.
        """
        config = self.config
        rendered = _rendered_size(height, width, scale)
        base_angle = float(rng.uniform(*config.angle))
        layers = int(rng.integers(config.layers[0], config.layers[1] + 1))
        total = torch.zeros(rendered, device=self.device)
        full = torch.zeros((height, width), device=self.device)
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
            if config.seeds == "noise":
                layer["noise_blur"] = float(extras.uniform(*config.noise_blur))
            if config.layer_scale is None:
                total += self._streaks(rendered, layer, rng)
            else:
                layer["scale"] = float(extras.uniform(*config.layer_scale))
                layer["defocus"] += config.near_defocus * (layer["scale"] - 1.0)
                own = _rendered_size(height, width, layer["scale"])
                full += _resize(self._streaks(own, layer, rng).clamp(0.0, 1.0), (height, width))
            layer_params.append(layer)
        if config.layer_scale is not None:
            return full.clamp(0.0, 1.0)[None], {"base_angle": base_angle, "layers": layer_params}
        total = total.clamp(0.0, 1.0)
        if rendered != (height, width):
            total = _resize(total, (height, width)).clamp(0.0, 1.0)
        return total[None], {"base_angle": base_angle, "layers": layer_params}

    def _streaks(
        self, rendered: tuple[int, int], layer: dict[str, float], rng: np.random.Generator
    ) -> torch.Tensor:
        """One layer's streaks on a `rendered` grid, peak `layer["intensity"]` (or all zero)."""
        kernel = streak_kernel(layer["length"], layer["angle"], layer["width"], self.device)
        # seeds on a canvas larger by the kernel, so streaks enter across the border
        canvas = (rendered[0] + kernel.shape[0] - 1, rendered[1] + kernel.shape[1] - 1)
        if self.config.seeds == "noise":
            seeds = _level_cut_noise(canvas, layer["density"], layer["noise_blur"], rng)
        else:
            count = int(rng.binomial(canvas[0] * canvas[1], layer["density"]))
            values = rng.uniform(*self.config.seed_value, count).astype(np.float32)
            positions = rng.integers(0, canvas[0] * canvas[1], count)
            # seeds are placed in NumPy (a repeated position keeps its last value, on any device)
            flat = np.zeros(canvas[0] * canvas[1], dtype=np.float32)
            flat[positions] = values
            seeds = flat.reshape(canvas)
        streaks = convolve_valid(torch.from_numpy(seeds).to(self.device), kernel)
        if layer["defocus"] > 0:
            streaks = _blur(streaks, layer["defocus"])
        peak = float(streaks.max())
        if peak <= 0:
            return torch.zeros_like(streaks)
        # FFT round-off leaves ~1e-7 everywhere; keep the layer exactly zero off-streak
        streaks = torch.where(streaks < _FFT_NOISE * peak, 0.0, streaks)
        return streaks * (layer["intensity"] / peak)


def paint_lines(
    image: torch.Tensor, rng: np.random.Generator, count: tuple[int, int] = (1, 4)
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """`image` (3×H×W in [0, 1]) with opaque, anti-aliased straight lines painted in: the
    poles, wires, masts and façade edges that rain is mistaken for.

    Most lines run within 30° of vertical (where rain falls), bright or dark, 1–4 pixels wide,
    a third to one and a half times the image's longest side long.

    Returns:
        The painted image (a new tensor) and each line's values.
    """
    height, width = image.shape[-2:]
    rows = torch.arange(height, device=image.device, dtype=torch.float32)[:, None]
    cols = torch.arange(width, device=image.device, dtype=torch.float32)[None, :]
    painted = image.clone()
    lines = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        steep = rng.random() < 0.7
        angle = float(rng.uniform(-30, 30) if steep else rng.uniform(-90, 90))
        bright = rng.random() < 0.6
        grey = float(rng.uniform(0.75, 1.0) if bright else rng.uniform(0.0, 0.3))
        tint = rng.uniform(-0.08, 0.08, 3)
        line = {
            "row": float(rng.uniform(0, height)),
            "col": float(rng.uniform(0, width)),
            "angle": angle,
            "length": float(rng.uniform(0.33, 1.5) * max(height, width)),
            "width": float(rng.uniform(1.0, 4.0)),
            "opacity": float(rng.uniform(0.8, 1.0)),
        }
        theta = math.radians(angle)
        down, right = math.cos(theta), math.sin(theta)
        dy, dx = rows - line["row"], cols - line["col"]
        along = (dy * down + dx * right).clamp(-line["length"] / 2, line["length"] / 2)
        distance = torch.sqrt((dy - along * down) ** 2 + (dx - along * right) ** 2)
        # coverage of each pixel by a bar of the line's width: 1 inside, a one-pixel ramp
        coverage = (line["width"] / 2 + 0.5 - distance).clamp(0.0, 1.0) * line["opacity"]
        colour = torch.tensor(
            np.clip(grey + tint, 0.0, 1.0), dtype=torch.float32, device=image.device
        )[:, None, None]
        painted = painted * (1 - coverage) + colour * coverage
        lines.append({**line, "colour": colour.flatten().tolist()})
    return painted, lines


def paint_pattern(
    image: torch.Tensor,
    rng: np.random.Generator,
    backing: float = 0.0,
    bar_max: float = WIDEST_BAR,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """`image` (3×H×W in [0, 1]) with a patch of opaque, anti-aliased parallel bars painted
    in: a fence, a window's frames and shutters, a railing, blinds.

    The bars run within 20° of vertical (where rain falls), 1 pixel to half their period
    wide and at most `bar_max`, a period of 3 to 28 pixels apart (`PATTERN_PERIOD`), mostly
    bright; a third of patches get a second set of bars across them (a window grid). The patch covers a quarter to all of each side,
    and the bars' brightness drifts along them, as light does on a real fence.
    With probability `backing` the patch behind the bars is first filled with a flat colour
    of the opposite brightness (dark glass behind white frames, a shutter's shadowed slats):
    the strongest contrast a thin bar has in photos. Its values are drawn after all others,
    so `backing=0` paints what it painted before.

    Returns:
        The painted image (a new tensor) and the pattern's values.
    """
    height, width = image.shape[-2:]
    device = image.device
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None]
    cols = torch.arange(width, device=device, dtype=torch.float32)[None, :]
    patch_h = float(rng.uniform(0.25, 1.0) * height)
    patch_w = float(rng.uniform(0.25, 1.0) * width)
    top = float(rng.uniform(0, height - patch_h))
    left = float(rng.uniform(0, width - patch_w))
    bright = rng.random() < 0.75
    pattern: dict[str, Any] = {
        "top": top,
        "left": left,
        "height": patch_h,
        "width": patch_w,
        "angle": float(rng.uniform(-20, 20)),
        "period": float(rng.uniform(*PATTERN_PERIOD)),
        "opacity": float(rng.uniform(0.85, 1.0)),
        "grey": float(rng.uniform(0.7, 1.0) if bright else rng.uniform(0.0, 0.3)),
        "cross_period": float(rng.uniform(8.0, 60.0)) if rng.random() < 1 / 3 else None,
    }
    # one draw whatever `bar_max` is: the draws after it stay as they were
    widest = max(1.0, min(pattern["period"] / 2, bar_max))
    pattern["bar_width"] = float(rng.uniform(1.0, widest))
    tint = rng.uniform(-0.06, 0.06, 3)
    drift = float(rng.uniform(-0.15, 0.15))  # brightness change from the patch's top to bottom
    phase = float(rng.uniform(0, pattern["period"]))

    def bars(across: torch.Tensor, period: float, bar_width: float) -> torch.Tensor:
        """Coverage of bars `period` apart along the coordinate `across`."""
        offset = torch.remainder(across, period)
        distance = torch.minimum(offset, period - offset)
        return (bar_width / 2 + 0.5 - distance).clamp(0.0, 1.0)

    theta = math.radians(pattern["angle"])
    dy, dx = rows - top, cols - left
    coverage = bars(
        dx * math.cos(theta) - dy * math.sin(theta) - phase, pattern["period"], pattern["bar_width"]
    )
    if pattern["cross_period"] is not None:
        rails = bars(
            dx * math.sin(theta) + dy * math.cos(theta),
            pattern["cross_period"],
            pattern["bar_width"],
        )
        coverage = torch.maximum(coverage, rails)
    # the patch's own edges, one pixel soft
    inside = (
        (dy + 0.5).clamp(0, 1)
        * (patch_h + 0.5 - dy).clamp(0, 1)
        * (dx + 0.5).clamp(0, 1)
        * (patch_w + 0.5 - dx).clamp(0, 1)
    )
    coverage = (coverage * inside * pattern["opacity"]).expand(3, height, width)
    along = (dy / max(patch_h, 1.0)).clamp(0, 1) - 0.5
    colour = (
        torch.tensor(pattern["grey"] + tint, dtype=torch.float32, device=device)[:, None, None]
        + drift * along
    ).clamp(0.0, 1.0)
    base = image
    if backing > 0 and rng.random() < backing:
        fill_grey = rng.uniform(0.02, 0.3) if bright else rng.uniform(0.6, 0.95)
        fill = np.clip(fill_grey + rng.uniform(-0.05, 0.05, 3), 0.0, 1.0)
        pattern["backing"] = {"grey": float(fill_grey), "opacity": float(rng.uniform(0.6, 1.0))}
        behind = (inside * pattern["backing"]["opacity"]).expand(3, height, width)
        fill_colour = torch.tensor(fill, dtype=torch.float32, device=device)[:, None, None]
        base = image * (1 - behind) + fill_colour * behind
    painted = base * (1 - coverage) + colour * coverage
    return painted, pattern


def scene_haze(
    clean: torch.Tensor, transmission: float, grey: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A veil of rain accumulation that follows the scene.

    Args:
        clean: 3×H×W photo in [0, 1].
        transmission: the transmission T of the farthest point; the nearest keeps between T
            and 1.
        grey: a grey level the veil's colour is partly mixed with.

    Returns:
        The transmission map (1×H×W: less towards the top of the frame and in a smooth random
        field, a guess at depth) and the veil's colour (3×1×1: the mean of the photo's
        brightest 1% of pixels, mixed with `grey` by a drawn share of at most one half).
    """
    height, width = clean.shape[-2:]
    device = clean.device
    tilt = float(rng.uniform(0.3, 1.0))
    coarse = torch.from_numpy(rng.random((1, 1, 4, 4)).astype(np.float32)).to(device)
    field_ = kornia.geometry.transform.resize(
        coarse, (height, width), interpolation="bilinear", align_corners=True
    )[0]
    vertical = torch.linspace(1.0, 0.0, height, device=device)[None, :, None]
    depth = tilt * vertical + (1.0 - tilt) * field_
    depth = (depth - depth.min()) / (depth.max() - depth.min()).clamp_min(1e-6)
    near = float(rng.uniform(transmission, 1.0))
    veil = near + (transmission - near) * depth
    luminance = clean.mean(dim=0).flatten()
    count = max(1, luminance.numel() // 100)
    brightest = torch.topk(luminance, count).indices
    sky = clean.flatten(1)[:, brightest].mean(dim=1)
    share = float(rng.uniform(0.0, 0.5))
    colour = ((1 - share) * sky + share * grey).clamp(0.0, 1.0)[:, None, None]
    return veil, colour


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


def _rendered_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, math.ceil(height / scale)), max(1, math.ceil(width / scale))


def _resize(layer: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An H×W layer resized to `size` (bilinear, antialiased)."""
    if tuple(layer.shape) == tuple(size):
        return layer
    return kornia.geometry.transform.resize(
        layer[None, None], size, interpolation="bilinear", antialias=True
    )[0, 0]


def _level_cut_noise(
    canvas: tuple[int, int], share: float, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Seeds of the image-editor recipe: Gaussian noise blurred by `sigma`, then levels that
    keep only its brightest `share` of pixels, stretched to (0, 1]."""
    noise = torch.from_numpy(rng.standard_normal(canvas).astype(np.float32))
    if sigma > 0:
        size = 2 * math.ceil(3 * sigma) + 1
        noise = kornia.filters.gaussian_blur2d(
            noise[None, None], (size, size), (sigma, sigma), border_type="reflect"
        )[0, 0]
    spread = float(noise.std())
    threshold = spread * NormalDist().inv_cdf(1.0 - share)
    return ((noise - threshold) / spread).clamp(0.0, 1.0).numpy()


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

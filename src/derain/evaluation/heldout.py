"""Held-out scores of a deraining model: what it does to photos and rain it never trained on.

Every case renders its images from photos kept out of training (the bundled test photos coffee
and chelsea, plus any folder of clean photos given, e.g. Kodak24) with a seed apart from the
training seeds, runs the model on each image and scores it with the papers' protocol (PSNR on
the rounded BT.601 Y plane, docs/protocol.md). Results are distributions over images, not one
mean:

  rain-free            the clean photo (PNG, and saved as JPEG q80) against what comes back:
                       median, 5th percentile, worst and the share below 40 dB
  JPEG rain            light / heavy rain, the rainy photo saved as JPEG q80: the gain
                       PSNR(derained) − PSNR(rainy), mean, median and worst
  full-HD rain         test photos cropped to 16:9 and resized to 1920×1080; light rain drawn at
                       full-HD scale (×3.4, the ratio of 1080 to Rain100L's 321-pixel side) and
                       the `large` preset
  demo light / heavy   the demo's test sets (test photos at 512 pixels, 4 draws each)
  rain family F        each preset of family F (`derain.data.synthetic.RAIN_FAMILIES`) once
                       per photo; a family the model never trained on is marked "held out" and
                       has the gain target
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from derain.data.datasets import SyntheticEvalDataset
from derain.data.photos import fit_longest_side, load_photo, photo_names
from derain.data.synthetic import RAIN_FAMILIES, SyntheticRain, rain_config
from derain.evaluation.metrics import psnr

FULL_HD = (1080, 1920)
FULL_HD_RAIN_SCALE = 1080 / 321
JPEG_QUALITY = 80
SEED = 2024  # apart from the training seeds
MAX_SIDE = 768
"""Folder photos are scored at most this large (Kodak24's own size)."""

LEVELS = ("subset", "quick", "full")
"""subset: the few images a model card's test re-scores (seconds); quick: one draw per case and
one full-HD photo; full: every case."""


@dataclass(frozen=True)
class Target:
    """What a case must reach: for "psnr", the median output PSNR (and every image at least
    `worst`); for "gain", the mean gain in dB."""

    measure: Literal["psnr", "gain"]
    value: float
    worst: float | None = None


RAIN_FREE = Target("psnr", 42.0, worst=36.0)
TARGETS: dict[str, Target] = {
    "rain-free (PNG)": RAIN_FREE,
    "rain-free (JPEG q80)": RAIN_FREE,
    "light rain, JPEG q80": Target("gain", 4.0),
    "heavy rain, JPEG q80": Target("gain", 4.0),
    "full-HD light rain (×3.4)": Target("gain", 3.0),
    "full-HD large rain": Target("gain", 3.0),
    "demo light": Target("gain", 7.0),
    "demo heavy": Target("gain", 8.0),
}
HELD_OUT_FAMILY = Target("gain", 4.0)


def family_case(family: str, held_out: bool) -> str:
    """The case name of rain family `family`."""
    return f"rain family {family}" + (" (held out)" if held_out else "")


def target_of(case: str) -> Target | None:
    """The target of a case; None for a rain family the model trained on (reported only)."""
    if case.endswith("(held out)"):
        return HELD_OUT_FAMILY
    return TARGETS.get(case)


def jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """H×W×3 float image in [0, 1] saved as JPEG and read back."""
    buffer = io.BytesIO()
    Image.fromarray(np.floor(np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
        buffer, format="JPEG", quality=quality
    )
    return np.asarray(Image.open(buffer), dtype=np.float32) / np.float32(255.0)


def full_hd(photo: np.ndarray) -> np.ndarray:
    """The largest 16:9 centre crop of `photo`, resized (Lanczos) to 1920×1080, 8-bit exact."""
    height, width = photo.shape[:2]
    crop_h = min(height, round(width * 9 / 16))
    crop_w = round(crop_h * 16 / 9)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    pixels = np.floor(photo[top : top + crop_h, left : left + crop_w] * 255 + 0.5).astype(np.uint8)
    resized = Image.fromarray(pixels).resize(FULL_HD[::-1], Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float32) / np.float32(255.0)


def y_psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """The papers' PSNR (rounded BT.601 Y) of two H×W×3 float images in [0, 1]."""

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    return float(psnr(tensor(image), tensor(reference))[0])


def cases(
    level: str = "full",
    photos: Sequence[str] = (),
    families: Sequence[str] = (),
    held_out: Sequence[str] = (),
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(case, input, clean reference) for every held-out example of `level`.

    Args:
        level: one of `LEVELS`.
        photos: photo files added to the bundled test photos (rain-free, JPEG rain and family
            cases), scored at most `MAX_SIDE` pixels large.
        families: rain families to score one case each (not at level "subset").
        held_out: the families among them the model never trained on.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}: expected one of {', '.join(LEVELS)}")
    test = photo_names("test")
    names = [*test, *photos]
    draws = 2 if level == "full" else 1
    presets = ("light",) if level == "subset" else ("light", "heavy")
    for index, name in enumerate(names):
        clean = _photo(name)
        yield "rain-free (PNG)", clean, clean
        if level != "subset":
            compressed = jpeg(clean)
            yield "rain-free (JPEG q80)", compressed, compressed
        for preset in presets:
            rain = SyntheticRain(preset, seed=SEED)
            # the folder photos get one draw: they add photos, not repeats
            for draw in range(draws if name in test else 1):
                sample = rain(clean, (index, draw), quantize=True)
                yield f"{preset} rain, JPEG q80", jpeg(sample.rainy), sample.clean
    if level == "subset":
        families = ()
    for family in families:
        case = family_case(family, family in held_out)
        for preset in RAIN_FAMILIES[family]:
            rain = SyntheticRain(preset, seed=SEED + 1)
            for index, name in enumerate(names):
                sample = rain(_photo(name), index, quantize=True)
                yield case, sample.rainy, sample.clean
    if level != "subset":
        for name in test if level == "full" else test[:1]:
            clean = full_hd(load_photo(name))
            for label, config in (
                (
                    "full-HD light rain (×3.4)",
                    rain_config("light", scale=(FULL_HD_RAIN_SCALE,) * 2),
                ),
                ("full-HD large rain", rain_config("large")),
            ):
                sample = SyntheticRain(config, seed=SEED)(clean, test.index(name), quantize=True)
                yield label, sample.rainy, sample.clean
    for preset in ("light", "heavy"):
        dataset = SyntheticEvalDataset("test", preset, draws=4 if level == "full" else 1)
        for index in range(len(dataset)):
            item = dataset[index]
            yield (
                f"demo {preset}",
                item["rainy"].numpy().transpose(1, 2, 0),
                item["clean"].numpy().transpose(1, 2, 0),
            )


def score(
    restore: Callable[[np.ndarray], np.ndarray],
    level: str = "full",
    photos: Sequence[str] = (),
    families: Sequence[str] = (),
    held_out: Sequence[str] = (),
) -> dict[str, dict]:
    """Per case: the distribution of the output PSNR (rain-free cases) or of the gain.

    Returns:
        {case: {"images", "input_psnr" (mean, None when rain-free), "output_psnr" (mean),
        "measure", "value" (median PSNR or mean gain), "median", "p5", "worst",
        "below_40" (share of images, rain-free cases), "target", "worst_target", "met"
        (None without a target)}}.
    """
    rows: dict[str, list[tuple[float, float]]] = {}
    for case, rainy, clean in cases(level, photos, families, held_out):
        derained = restore(rainy)
        before = y_psnr(rainy, clean) if not np.array_equal(rainy, clean) else float("inf")
        rows.setdefault(case, []).append((before, y_psnr(derained, clean)))
    return {case: summarise(case, pairs) for case, pairs in rows.items()}


def summarise(case: str, pairs: Sequence[tuple[float, float]]) -> dict:
    """One case's row of `score` from its (input PSNR, output PSNR) pairs."""
    before, after = np.array(pairs, dtype=np.float64).T
    target = target_of(case)
    rain_free = bool(np.isinf(before).all())
    values = after if rain_free else after - before
    value = float(np.median(values)) if rain_free else float(values.mean())
    met = None
    if target is not None:
        met = value >= target.value and (
            target.worst is None or float(values.min()) >= target.worst
        )
    return {
        "images": len(pairs),
        "input_psnr": None if rain_free else float(before.mean()),
        "output_psnr": float(after.mean()),
        "measure": "psnr" if rain_free else "gain",
        "value": value,
        "median": float(np.median(values)),
        "p5": _percentile(values, 5),
        "worst": float(values.min()),
        "below_40": float((after < 40).mean()) if rain_free else None,
        "target": None if target is None else target.value,
        "worst_target": None if target is None else target.worst,
        "met": met,
    }


def table(results: dict[str, dict]) -> str:
    """A Markdown table of `score`'s results."""
    lines = [
        "| case | images | input | output (mean) | measure | median | 5th pct | worst | "
        "< 40 dB | target | met |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | :---: |",
    ]
    for case, row in results.items():
        gain = row["measure"] == "gain"
        sign = "+" if gain else ""
        measure = f"mean gain {row['value']:+.2f}" if gain else f"median {row['value']:.2f}"
        if row["target"] is None:
            target, met = "—", "—"
        else:
            target = f"≥ +{row['target']:.0f}" if gain else f"≥ {row['target']:.0f}"
            if row["worst_target"] is not None:
                target += f", all ≥ {row['worst_target']:.0f}"
            met = "yes" if row["met"] else "no"
        lines.append(
            f"| {case} | {row['images']} | "
            f"{'—' if row['input_psnr'] is None else format(row['input_psnr'], '.2f')} | "
            f"{row['output_psnr']:.2f} | {measure} | {row['median']:{sign}.2f} | "
            f"{row['p5']:{sign}.2f} | {row['worst']:{sign}.2f} | "
            f"{'—' if row['below_40'] is None else format(row['below_40'], '.0%')} | "
            f"{target} | {met} |"
        )
    return "\n".join(lines)


def _percentile(values: np.ndarray, q: float) -> float:
    with np.errstate(invalid="ignore"):  # an identity model's rain-free PSNRs are all infinite
        return float(np.percentile(values, q))


def _photo(name: str) -> np.ndarray:
    return np.array(fit_longest_side(load_photo(name), MAX_SIDE))

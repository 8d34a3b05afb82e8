"""Does a model work on photos out of the box? Held-out scores of the bundled model (or any).

Every case uses the held-out test photos (coffee, chelsea: never trained on), the model's
default settings (one pass, float32) and the papers' protocol (PSNR on the rounded BT.601 Y
plane, docs/protocol.md). Gains are PSNR(derained, clean) − PSNR(rainy, clean), the mean over
photos and draws.

  rain-free            the clean photo (PNG, and saved as JPEG q80) against what comes back
  JPEG rain            light / heavy rain, the rainy photo saved as JPEG q80, gain
  full-HD rain         each photo cropped to 16:9 and resized to 1920×1080; light rain drawn at
                       full-HD scale (×3.4, the ratio of 1080 to Rain100L's 321-pixel side)
                       and the `large` preset; gain
  demo light / heavy   the demo's test sets (test photos at 512 pixels, 4 draws each), gain

    python benchmarks/bench_default_model.py                       # the bundled model
    python benchmarks/bench_default_model.py --model logs/.../last.ckpt --level quick
    python benchmarks/bench_default_model.py --json scores.json
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image

import derain
from derain.data import SyntheticEvalDataset, SyntheticRain, load_photo
from derain.data.photos import photo_names
from derain.data.synthetic import rain_config
from derain.evaluation.metrics import psnr

FULL_HD = (1080, 1920)
FULL_HD_RAIN_SCALE = 1080 / 321
JPEG_QUALITY = 80
SEED = 2024  # apart from the training seeds
TARGETS = {
    "rain-free (PNG)": ("psnr", 40.0),
    "rain-free (JPEG q80)": ("psnr", 40.0),
    "light rain, JPEG q80": ("gain", 4.0),
    "heavy rain, JPEG q80": ("gain", 4.0),
    "full-HD light rain (×3.4)": ("gain", 3.0),
    "full-HD large rain": ("gain", 3.0),
    "demo light": ("gain", 7.0),
    "demo heavy": ("gain", 8.0),
}


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
    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    return float(psnr(tensor(image), tensor(reference))[0])


LEVELS = ("subset", "quick", "full")
"""subset: the few images a model card's test re-scores (seconds); quick: one draw per case and
one full-HD photo; full: every case."""


def cases(level: str = "full") -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(case, rainy input, clean reference) for every held-out example of `level`."""
    photos = photo_names("test")
    draws = 2 if level == "full" else 1
    presets = ("light",) if level == "subset" else ("light", "heavy")
    for name in photos:
        clean = np.array(load_photo(name))
        yield "rain-free (PNG)", clean, clean
        if level != "subset":
            compressed = jpeg(clean)
            yield "rain-free (JPEG q80)", compressed, compressed
        for preset in presets:
            rain = SyntheticRain(preset, seed=SEED)
            for draw in range(draws):
                sample = rain(clean, (photos.index(name), draw), quantize=True)
                yield f"{preset} rain, JPEG q80", jpeg(sample.rainy), sample.clean
    if level != "subset":
        for name in photos if level == "full" else photos[:1]:
            clean = full_hd(load_photo(name))
            for label, config in (
                (
                    "full-HD light rain (×3.4)",
                    rain_config("light", scale=(FULL_HD_RAIN_SCALE,) * 2),
                ),
                ("full-HD large rain", rain_config("large")),
            ):
                sample = SyntheticRain(config, seed=SEED)(clean, photos.index(name), quantize=True)
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


def score(restore: Callable[[np.ndarray], np.ndarray], level: str = "full") -> dict[str, dict]:
    """Per case: mean PSNR of input and output against the reference, the gain, the count."""
    rows: dict[str, list[tuple[float, float]]] = {}
    for case, rainy, clean in cases(level):
        derained = restore(rainy)
        before = y_psnr(rainy, clean) if not np.array_equal(rainy, clean) else float("inf")
        rows.setdefault(case, []).append((before, y_psnr(derained, clean)))
    results = {}
    for case, pairs in rows.items():
        before, after = np.array(pairs).T
        measure, target = TARGETS[case]
        value = float(after.mean()) if measure == "psnr" else float((after - before).mean())
        results[case] = {
            "input_psnr": float(before.mean()),
            "output_psnr": float(after.mean()),
            "gain": None if measure == "psnr" else value,
            "measure": measure,
            "value": value,
            "target": target,
            "met": value >= target,
            "images": len(pairs),
        }
    return results


def table(results: dict[str, dict]) -> str:
    lines = [
        "| case | images | input Y-PSNR | output Y-PSNR | measure | target | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for case, row in results.items():
        measure = (
            f"{row['value']:.2f} dB" if row["measure"] == "psnr" else f"{row['value']:+.2f} dB"
        )
        target = (
            f"≥ {row['target']:.0f} dB"
            if row["measure"] == "psnr"
            else f"≥ +{row['target']:.0f} dB"
        )
        before = "—" if row["measure"] == "psnr" else f"{row['input_psnr']:.2f}"
        lines.append(
            f"| {case} | {row['images']} | {before} | {row['output_psnr']:.2f} | {measure} | "
            f"{target} | {'yes' if row['met'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help="short name, checkpoint or model folder (default: the bundled model)",
    )
    parser.add_argument(
        "--level",
        choices=LEVELS,
        default="full",
        help="full (default): every case; quick: one draw per case, one full-HD photo; subset: the "
        "images a model card's test re-scores",
    )
    parser.add_argument(
        "--max-tile",
        default="model",
        help="largest one-pass side: model (the model's own, default), none, or a multiple of 16",
    )
    parser.add_argument("--json", default=None, help="also write the scores to this file")
    args = parser.parse_args()
    choice = args.max_tile.lower()
    max_tile = choice if choice == "model" else None if choice == "none" else int(choice)
    restorer = derain.load(args.model, max_tile=max_tile)
    start = time.perf_counter()
    results = score(restorer, args.level)
    print(f"max_tile: {restorer.max_tile or 'none (whole images)'}")
    print(table(results))
    print(
        f"\n{sum(r['images'] for r in results.values())} images in {time.perf_counter() - start:.0f} s"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()

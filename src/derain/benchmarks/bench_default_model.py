"""Does a model work on photos and rain it never trained on? Held-out scores of the bundled
model (or any), as distributions over images (derain.evaluation.heldout says what each case is).

    python -m derain.benchmarks.bench_default_model                       # the bundled model
    python -m derain.benchmarks.bench_default_model --photos ../shared/photos/Kodak24 --held-out screen
    python -m derain.benchmarks.bench_default_model --model logs/.../last.ckpt --level quick
    python -m derain.benchmarks.bench_default_model --json scores.json --time-photo 4000x3000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import derain
from derain.data.photos import folder_photos
from derain.data.synthetic import RAIN_FAMILIES
from derain.evaluation.heldout import LEVELS, score, table


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
    parser.add_argument(
        "--photos",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a folder of clean photos held out from training, added to the test photos "
        "(repeatable)",
    )
    parser.add_argument(
        "--families",
        nargs="*",
        default=list(RAIN_FAMILIES),
        help=f"rain families to score (default: all: {' '.join(RAIN_FAMILIES)})",
    )
    parser.add_argument(
        "--held-out",
        nargs="*",
        default=[],
        metavar="FAMILY",
        help="families the model never trained on (they get the +4 dB target)",
    )
    parser.add_argument(
        "--time-photo",
        default=None,
        metavar="WxH",
        help="also time one photo of this size (e.g. 4000x3000, 12 megapixels)",
    )
    parser.add_argument("--json", default=None, help="also write the scores to this file")
    args = parser.parse_args()
    unknown = sorted(set(args.families + args.held_out) - set(RAIN_FAMILIES))
    if unknown:
        parser.error(f"unknown rain families {unknown}: expected some of {list(RAIN_FAMILIES)}")
    choice = args.max_tile.lower()
    max_tile = choice if choice == "model" else None if choice == "none" else int(choice)
    restorer = derain.load(args.model, max_tile=max_tile)
    photos = [path for folder in args.photos for path in folder_photos(folder)]
    start = time.perf_counter()
    results = score(restorer, args.level, photos, args.families, args.held_out)
    elapsed = time.perf_counter() - start
    print(f"max_tile: {restorer.max_tile or 'none (whole images)'}; photos: test + {len(photos)}")
    print(table(results))
    print(f"\n{sum(r['images'] for r in results.values())} images in {elapsed:.0f} s")
    if args.time_photo:
        width, height = (int(side) for side in args.time_photo.lower().split("x"))
        image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
        start = time.perf_counter()
        restorer(image)
        seconds = time.perf_counter() - start
        print(f"one {width}×{height} photo ({width * height / 1e6:.1f} MP): {seconds:.0f} s")
        results["timing"] = {"size": [width, height], "seconds": seconds}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()

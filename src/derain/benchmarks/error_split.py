"""Where a checkpoint's error lies on the synthetic test sets: on the rain streaks or elsewhere.

For each test image it prints the Y-PSNR (papers' protocol) of
  - output: the restored image;
  - on streaks only: the output on the streak pixels and the rainy input elsewhere, i.e. how far
    streak removal alone would get if everything else were left untouched;
  - clean streaks: the clean image on the streak pixels and the output elsewhere, i.e. the cap the
    pixels away from the rain put on the score.
Streak pixels are those where rainy and clean differ by more than one 8-bit level, dilated by
one pixel. `--ensemble` and `--tile` compare ×8 self-ensembling and tiled inference, whole-image
scores only.

    python -m derain.benchmarks.error_split logs/demo/runs/RUN/checkpoints/last.ckpt
    python -m derain.benchmarks.error_split CKPT --preset heavy --ensemble --tile 64 128
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from derain.data.datasets import SyntheticEvalDataset
from derain.evaluation.metrics import psnr
from derain.inference.checkpoint import load_model
from derain.inference.restorer import Restorer


def streak_mask(rainy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """H×W bool: pixels where 3×H×W `rainy` and `clean` differ by more than one 8-bit level in
    some channel, dilated by one pixel (a streak's anti-aliased fringe)."""
    changed = ((rainy - clean).abs().amax(dim=0) > 1.0 / 255).numpy()
    return torch.from_numpy(binary_dilation(changed, iterations=1))


def split_scores(rainy: torch.Tensor, clean: torch.Tensor, output: torch.Tensor) -> dict:
    """Y-PSNR of the input, the output and the two composites (see the module docstring)."""
    mask = streak_mask(rainy, clean)[None]

    def score(image: torch.Tensor) -> float:
        return float(psnr(image[None], clean[None], channel="y"))

    return {
        "input": score(rainy),
        "output": score(output),
        "on_streaks_only": score(torch.where(mask, output, rainy)),
        "clean_streaks": score(torch.where(mask, clean, output)),
        "streak_share": float(mask.float().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--preset", default="light", help="rain preset of the test set")
    parser.add_argument("--draws", type=int, default=4, help="rain draws per test photo")
    parser.add_argument("--ensemble", action="store_true", help="also score ×8 self-ensemble")
    parser.add_argument("--tile", type=int, nargs="*", default=[], help="also score these tiles")
    args = parser.parse_args(argv)

    model = load_model(args.checkpoint).eval()
    data = SyntheticEvalDataset(split="test", preset=args.preset, draws=args.draws)
    items = [data[i] for i in range(len(data))]
    restorer = Restorer(model, device="cpu")
    rows = []
    print(f"{'image':24} {'input':>7} {'output':>7} {'streaks':>8} {'clean st.':>9} {'share':>6}")
    for item in items:
        with torch.no_grad():
            output, _ = restorer.restore_batch(item["rainy"][None])
        row = split_scores(item["rainy"], item["clean"], output[0].clamp(0, 1))
        rows.append(row)
        print(
            f"{item['name']:24} {row['input']:7.2f} {row['output']:7.2f} "
            f"{row['on_streaks_only']:8.2f} {row['clean_streaks']:9.2f} {row['streak_share']:6.3f}"
        )
    mean = {key: np.mean([row[key] for row in rows]) for key in rows[0]}
    print(
        f"{'mean':24} {mean['input']:7.2f} {mean['output']:7.2f} "
        f"{mean['on_streaks_only']:8.2f} {mean['clean_streaks']:9.2f} {mean['streak_share']:6.3f}"
    )

    variants = [("×8 self-ensemble", dict(self_ensemble=True))] if args.ensemble else []
    variants += [
        (f"tiles {t}² (overlap {t // 4})", dict(tile=t, overlap=t // 4)) for t in args.tile
    ]
    for name, options in variants:
        restorer = Restorer(model, device="cpu", **options)
        scores = []
        for item in items:
            with torch.no_grad():
                output, _ = restorer.restore_batch(item["rainy"][None])
            scores.append(float(psnr(output.clamp(0, 1), item["clean"][None], channel="y")))
        print(f"{name}: {np.mean(scores):.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

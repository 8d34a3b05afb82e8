"""Scoring a folder of results against a folder of ground truths, paired by file name: the
papers' MATLAB scoring script in Python. `run(cfg)` is the task behind `derain-score`
(conf/score.yaml).

Results and ground truths are paired by file name without extension (`rain-001.png` with
`rain-001.jpg`), never by sorted position; the scores follow `derain.evaluation.metrics`
(docs/protocol.md).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.progress import track
from rich.table import Table

from derain.data.io import is_image_file, read_image, read_image_size
from derain.evaluation.metrics import Channel, psnr, ssim
from derain.runtime.console import make_console

_LISTED_NAMES = 10  # unmatched / mismatched files named in an error before "... and N more"


@dataclass(frozen=True)
class ImagePair:
    """A result and its ground truth, matched by `name` (the shared file stem)."""

    name: str
    pred: Path
    gt: Path


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED_NAMES])
    more = len(items) - _LISTED_NAMES
    return f"{shown} ... and {more} more" if more > 0 else shown


def _images_by_stem(folder: Path, setting: str) -> dict[str, Path]:
    """Image files of `folder` keyed by stem; errors name the folder and the `setting` to fix."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{setting}={folder}: no such folder; give the folder of "
            f"{'derained results' if setting == 'pred' else 'ground-truth images'}"
        )
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not (path.is_file() and is_image_file(path)):
            continue
        if path.stem in images:
            raise ValueError(
                f"{setting}={folder} holds two images named {path.stem!r} "
                f"({images[path.stem].name} and {path.name}): keep one, pairs are matched by name"
            )
        images[path.stem] = path
    if not images:
        raise ValueError(
            f"{setting}={folder} contains no image files (.png, .jpg, ...): check the path"
        )
    return images


def pair_by_name(pred_dir: Path, gt_dir: Path) -> list[ImagePair]:
    """Pairs every image of `pred_dir` with the image of the same stem in `gt_dir`.

    Extensions may differ (.png results against .jpg ground truth). Raises ValueError naming the
    files when either folder has an image without a partner, so a subset or a renamed set is never
    scored silently.
    """
    preds = _images_by_stem(pred_dir, "pred")
    gts = _images_by_stem(gt_dir, "gt")
    pred_only = sorted(preds.keys() - gts.keys())
    gt_only = sorted(gts.keys() - preds.keys())
    if pred_only or gt_only:
        problems = []
        if pred_only:
            names = [preds[stem].name for stem in pred_only]
            problems.append(f"no ground truth in {gt_dir} for {_listing(names)}")
        if gt_only:
            names = [gts[stem].name for stem in gt_only]
            problems.append(f"no result in {pred_dir} for {_listing(names)}")
        raise ValueError(
            "results and ground truths are paired by file name (extension aside): "
            + "; ".join(problems)
            + ". Rename the files so each result has the name of its ground truth."
        )
    return [ImagePair(stem, preds[stem], gts[stem]) for stem in sorted(preds)]


def check_sizes(pairs: list[ImagePair]) -> None:
    """Reads the headers only, so a wrong folder fails before any image is scored."""
    mismatched = []
    for pair in pairs:
        pred_size, gt_size = read_image_size(pair.pred), read_image_size(pair.gt)
        if pred_size != gt_size:
            mismatched.append(
                f"{pair.pred} is {pred_size[0]}×{pred_size[1]} but {pair.gt} is "
                f"{gt_size[0]}×{gt_size[1]}"
            )
    if mismatched:
        raise ValueError(
            "result and ground truth differ in size (height×width): "
            + _listing(mismatched)
            + ". Save results at the ground truth's size (crop away any padding)."
        )


def _as_batch(image) -> torch.Tensor:
    """H×W×3 float32 array → 1×3×H×W tensor."""
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)


def score_pairs(
    pairs: list[ImagePair],
    channel: Channel = "y",
    rounded_y: bool = True,
    console: Console | None = None,
) -> list[dict]:
    """Per-image scores, one dict per pair: name, pred, gt (paths), psnr (dB), ssim.

    A progress bar is drawn on `console` (stderr by default) while scoring.
    """
    console = console or Console(stderr=True)
    rows = []
    for pair in track(pairs, description="scoring", console=console, transient=True):
        pred, gt = _as_batch(read_image(pair.pred)), _as_batch(read_image(pair.gt))
        rows.append(
            {
                "name": pair.name,
                "pred": str(pair.pred),
                "gt": str(pair.gt),
                "psnr": psnr(pred, gt, channel=channel, rounded_y=rounded_y).item(),
                "ssim": ssim(pred, gt, channel=channel, rounded_y=rounded_y).item(),
            }
        )
    return rows


def write_reports(out: Path, summary: dict) -> list[Path]:
    """scores.csv (one row per image) and scores.json (settings, means, per-image rows).

    An identical pair has PSNR inf, written as `inf` in the CSV and `Infinity` in the JSON.
    """
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "scores.csv", out / "scores.json"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "pred", "gt", "psnr", "ssim"])
        writer.writeheader()
        writer.writerows(summary["images"])
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    return [csv_path, json_path]


def score_folders(
    pred_dir: Path, gt_dir: Path, channel: Channel = "y", rounded_y: bool = True
) -> dict:
    """Scores every result of `pred_dir` against its ground truth in `gt_dir`.

    Returns the summary: pred, gt, channel, rounded_y, count, psnr and ssim (means over images)
    and images (the per-image rows of `score_pairs`).
    """
    pairs = pair_by_name(pred_dir, gt_dir)
    check_sizes(pairs)
    rows = score_pairs(pairs, channel=channel, rounded_y=rounded_y)
    return {
        "pred": str(pred_dir),
        "gt": str(gt_dir),
        "channel": channel,
        "rounded_y": rounded_y,
        "count": len(rows),
        "psnr": math.fsum(row["psnr"] for row in rows) / len(rows),
        "ssim": math.fsum(row["ssim"] for row in rows) / len(rows),
        "images": rows,
    }


def run(cfg: DictConfig, console: Console | None = None) -> dict:
    """Scores `cfg.pred` against `cfg.gt`, prints the means on `console` (the terminal by
    default) and writes scores.csv and scores.json to `cfg.output` if set.

    Returns `score_folders`' summary, with `written`: the report files (empty without output).
    """
    console = console or make_console()
    for setting in ("pred", "gt"):
        if OmegaConf.is_missing(cfg, setting):
            raise ValueError(f"{setting}=DIR is required: derain-score pred=RESULTS_DIR gt=GT_DIR")
    if cfg.channel not in ("y", "rgb"):
        raise ValueError(f"channel={cfg.channel} is not supported: use channel=y or channel=rgb")
    if not isinstance(cfg.rounded_y, bool):
        raise ValueError(f"rounded_y={cfg.rounded_y} is not a boolean: use rounded_y=true or false")
    pred_dir, gt_dir = Path(cfg.pred), Path(cfg.gt)
    summary = score_folders(pred_dir, gt_dir, channel=cfg.channel, rounded_y=cfg.rounded_y)

    plane = "RGB" if cfg.channel == "rgb" else ("Y" if cfg.rounded_y else "Y (unrounded)")
    table = Table(title=escape(f"{pred_dir} vs {gt_dir}"))
    table.add_column("channel")
    table.add_column("images", justify="right")
    table.add_column("PSNR (dB)", justify="right")
    table.add_column("SSIM", justify="right")
    table.add_row(plane, str(summary["count"]), f"{summary['psnr']:.4f}", f"{summary['ssim']:.4f}")
    console.print(table)
    written = write_reports(Path(cfg.output), summary) if cfg.output is not None else []
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False)
    return {**summary, "written": written}

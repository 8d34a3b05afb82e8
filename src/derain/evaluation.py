"""Result tables of an evaluation: Markdown, JSON and per-image CSV, plus the example panel."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from derain.visualize import save_panel

COLUMNS = ("input_psnr", "input_ssim", "psnr", "ssim")


def with_mean(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Adds the row "mean": the unweighted mean of the per-set means (the papers' "average")."""
    if not results:
        return {}
    mean = {k: statistics.fmean(r[k] for r in results.values()) for k in COLUMNS}
    mean["images"] = sum(int(r["images"]) for r in results.values())
    return {**results, "mean": mean}


def markdown_table(results: dict[str, dict[str, float]], title: str | None = None) -> str:
    """A Markdown table: one row per test set and the unweighted mean, PSNR in dB."""
    rows = with_mean(results)
    lines = [f"## {title}", ""] if title else []
    lines += [
        "| set | images | input PSNR | input SSIM | PSNR | SSIM | ΔPSNR |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        label = "**mean over sets**" if name == "mean" else name
        lines.append(
            f"| {label} | {int(r['images'])} | {r['input_psnr']:.2f} | {r['input_ssim']:.4f} | "
            f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['psnr'] - r['input_psnr']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(
    out_dir: str | Path,
    results: dict[str, dict[str, float]],
    per_image: list[dict[str, Any]],
    metadata: dict[str, Any],
    panel: np.ndarray | None = None,
) -> dict[str, Path]:
    """Writes results.md, results.json, per_image.csv and panel.png into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protocol = (
        "Y-channel (BT.601 studio range, rounded) PSNR/SSIM as the papers' MATLAB script"
        if metadata.get("metric_channel", "y") == "y"
        else "RGB PSNR/SSIM"
    )
    title = metadata.get("title", "Evaluation")
    md = (
        markdown_table(results, title)
        + f"\n{protocol}; checkpoint: `{metadata.get('ckpt_path')}`\n"
    )
    paths = {
        "markdown": out / "results.md",
        "json": out / "results.json",
        "csv": out / "per_image.csv",
    }
    paths["markdown"].write_text(md)
    paths["json"].write_text(
        json.dumps(
            {"metadata": metadata, "sets": with_mean(results), "per_image": per_image}, indent=2
        )
    )
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["set", "name", "input_psnr", "psnr", "ssim"])
        writer.writeheader()
        for row in per_image:
            writer.writerow({k: row[k] for k in writer.fieldnames})
    if panel is not None:
        paths["panel"] = save_panel(panel, out / "panel.png")
    return paths

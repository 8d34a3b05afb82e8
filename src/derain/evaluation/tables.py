"""Result tables of an evaluation: Markdown, JSON and per-image CSV, plus the example panel."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from derain.evaluation.panels import save_panel
from derain.models.ensemble import SELF_ENSEMBLES

COLUMNS = ("input_psnr", "input_ssim", "psnr", "ssim")
SINGLE_COLUMNS = ("single_psnr", "single_ssim")
"""Present when the output was a self-ensemble: the same network's single-pass scores."""


PRECISION_WORDS = {
    "32-true": "float32 (32-true)",
    "bf16-mixed": "bf16 autocast (bf16-mixed)",
    "16-mixed": "fp16 autocast (16-mixed)",
}
"""How results.md names the precision the network was scored in."""


def _columns(results: dict[str, dict[str, float]]) -> tuple[str, ...]:
    if results and all(all(k in r for k in SINGLE_COLUMNS) for r in results.values()):
        return COLUMNS + SINGLE_COLUMNS
    return COLUMNS


def with_mean(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Adds the row "mean": the unweighted mean of the per-set means (the papers' "average")
    over the rainy sets; a rain-free set (input PSNR infinite: input = target) has no gain to
    average and is left out of it."""
    rainy = [r for r in results.values() if np.isfinite(r["input_psnr"])]
    if not rainy:
        return dict(results)
    mean = {k: statistics.fmean(r[k] for r in rainy) for k in _columns(results)}
    mean["images"] = sum(int(r["images"]) for r in rainy)
    return {**results, "mean": mean}


def markdown_table(results: dict[str, dict[str, float]], title: str | None = None) -> str:
    """A Markdown table: one row per test set and the unweighted mean, PSNR in dB."""
    rows = with_mean(results)
    single = _columns(results) != COLUMNS
    lines = [f"## {title}", ""] if title else []
    header = "| set | images | input PSNR | input SSIM | PSNR | SSIM | ΔPSNR |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    if single:
        header += " single-pass PSNR | single-pass SSIM | single-pass ΔPSNR |"
        rule += " ---: | ---: | ---: |"
    lines += [header, rule]
    for name, r in rows.items():
        label = "**mean over sets**" if name == "mean" else name
        line = (
            f"| {label} | {int(r['images'])} | {r['input_psnr']:.2f} | {r['input_ssim']:.4f} | "
            f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['psnr'] - r['input_psnr']:+.2f} |"
        )
        if single:
            line += (
                f" {r['single_psnr']:.2f} | {r['single_ssim']:.4f} | "
                f"{r['single_psnr'] - r['input_psnr']:+.2f} |"
            )
        lines.append(line)
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
    ensemble = metadata.get("self_ensemble")
    restored = (
        f"; outputs are the mean over {SELF_ENSEMBLES[ensemble].description} (single-pass scores "
        "in the last columns)"
        if ensemble
        else ""
    )
    precision = metadata.get("precision")
    network = f"; network run in {PRECISION_WORDS.get(precision, precision)}" if precision else ""
    md = (
        markdown_table(results, title)
        + f"\n{protocol}{restored}{network}; checkpoint: `{metadata.get('ckpt_path')}`\n"
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
        fields = ["set", "name", "input_psnr", "psnr", "ssim"]
        if per_image and all("single_psnr" in row for row in per_image):
            fields.append("single_psnr")
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in per_image:
            writer.writerow({k: row[k] for k in writer.fieldnames})
    if panel is not None:
        paths["panel"] = save_panel(panel, out / "panel.png")
    return paths

"""The leave-one-rain-family-out table: does a model remove rain it was not made from?

Reads the runs of `derain-train -m experiment=rain_families holdout=none,streak,...`: each run
folder holds its resolved config (`.hydra/config.yaml`, which names the held-out family) and
its test results (`results.json`, one test set per rain family and `rain_free`, with `psnr` and
`input_psnr` means; `per_image.csv`, one row per image). For every family the table gives its
gain (output − input Y-PSNR, mean over the test images) in the run that trained on every family
and in the run that held it out, and the rain-free photos' PSNR distribution in each run.

    python -m derain.studies.families logs/rain_families/multiruns/RUN [--out table.md]
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from derain.data.synthetic import RAIN_FAMILIES

RAIN_FREE_SET = "rain_free"


@dataclass(frozen=True)
class FamilyRun:
    """One finished run: its held-out family (None: trained on all), per-set gains and the
    rain-free PSNRs of its test photos."""

    folder: Path
    holdout: str | None
    gains: dict[str, float]
    rain_free: tuple[float, ...]


def read_run(folder: str | Path) -> FamilyRun:
    """A finished run folder of experiment=rain_families.

    Raises:
        FileNotFoundError: the folder lacks `.hydra/config.yaml` or `results.json` (the run did
            not finish); the message names it.
    """
    folder = Path(folder)
    config_file, results_file = folder / ".hydra" / "config.yaml", folder / "results.json"
    for path in (config_file, results_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {folder} is not a finished run")
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    holdout = config.get("holdout")
    results = json.loads(results_file.read_text(encoding="utf-8"))["sets"]
    gains = {
        name: float(scores["psnr"] - scores["input_psnr"])
        for name, scores in results.items()
        if name in RAIN_FAMILIES
    }
    rain_free: list[float] = []
    per_image = folder / "per_image.csv"
    if per_image.is_file():
        with per_image.open(encoding="utf-8", newline="") as handle:
            rain_free = [
                float(row["psnr"]) for row in csv.DictReader(handle) if row["set"] == RAIN_FREE_SET
            ]
    return FamilyRun(
        folder, None if holdout in (None, "none") else str(holdout), gains, tuple(rain_free)
    )


def read_sweep(folder: str | Path) -> list[FamilyRun]:
    """Every finished run under a multirun folder (unfinished ones are left out)."""
    runs = []
    for candidate in sorted(Path(folder).iterdir()):
        if (candidate / "results.json").is_file():
            runs.append(read_run(candidate))
    if not runs:
        raise FileNotFoundError(f"no finished runs (results.json) under {folder}")
    return runs


def leave_one_out(runs: list[FamilyRun]) -> list[dict]:
    """One row per family tested: its gain when trained on (the run holding nothing out) and
    when held out, and the difference (held out − trained on)."""
    full = next((run for run in runs if run.holdout is None), None)
    held = {run.holdout: run for run in runs if run.holdout is not None}
    families = sorted({name for run in runs for name in run.gains})
    rows = []
    for family in families:
        trained = full.gains.get(family) if full else None
        out = held[family].gains.get(family) if family in held else None
        rows.append(
            {
                "family": family,
                "trained_on": trained,
                "held_out": out,
                "transfer_gap": None if trained is None or out is None else out - trained,
            }
        )
    return rows


def rain_free_rows(runs: list[FamilyRun]) -> list[dict]:
    """Per run: the rain-free photos' PSNR distribution (median, 5th percentile, worst)."""
    rows = []
    for run in runs:
        if not run.rain_free:
            continue
        values = np.array(run.rain_free)
        rows.append(
            {
                "holdout": run.holdout or "none",
                "images": len(values),
                "median": float(np.median(values)),
                "p5": float(np.percentile(values, 5)),
                "worst": float(values.min()),
                "below_40": float((values < 40).mean()),
            }
        )
    return rows


def markdown(runs: list[FamilyRun]) -> str:
    """The two tables as Markdown."""

    def db(value: float | None, sign: str = "+") -> str:
        return "—" if value is None else f"{value:{sign}.2f}"

    lines = [
        "| rain family | gain, trained on | gain, held out | held out − trained on |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in leave_one_out(runs):
        lines.append(
            f"| {row['family']} | {db(row['trained_on'])} | {db(row['held_out'])} | "
            f"{db(row['transfer_gap'])} |"
        )
    free = rain_free_rows(runs)
    if free:
        lines += [
            "",
            "| run (held out) | rain-free photos | median | 5th pct | worst | < 40 dB |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in free:
            lines.append(
                f"| {row['holdout']} | {row['images']} | {row['median']:.2f} | {row['p5']:.2f} | "
                f"{row['worst']:.2f} | {row['below_40']:.0%} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a multirun folder of experiment=rain_families")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    text = markdown(read_sweep(args.sweep))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""The results of an ablation study, read from its run folders (notebooks/01_ablation.ipynb).

A study is a Hydra multirun of conf/experiment/ablation.yaml: one folder per point,
logs/ablation/<study>/<variant>/seed<seed>/, holding results.json (per-set means),
per_image.csv (the score of every test image), curve.csv (validation against steps and time)
and finished.json. This module turns them into what settles a question:

    runs = read_runs("logs/ablation/default")
    table = study_table(runs)                 # mean ± std over seeds, paired Δ to `full` with a
    print(table.to_markdown())                # 95% bootstrap interval and a verdict, cost
    plot_learning_curves(runs)                # val PSNR against steps and CPU time

Differences to the reference are paired: the same test image, scored after the same seed, by
both networks. The point estimate is the mean over seeds, test sets (unweighted, the papers'
"average") and images of those differences, which equals the difference of the variants' mean
scores; its interval resamples images within each test set and seeds (`paired_bootstrap`).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from derain.studies.ablation import REFERENCE
from derain.studies.curves import CURVE_FILE, TIME_FILE

VERDICTS = ("better", "worse", "not resolved")


# ----------------------------------------------------------------------------- reading
@dataclass
class Run:
    """One finished point of a study.

    sets: per test set, the means of results.json (psnr, ssim, input_psnr, ..., images).
    per_image: per (set, image name), the rows of per_image.csv (psnr, ssim, input_psnr).
    curve: the rows of curve.csv (step, wall_s, cpu_s, val/psnr, ...), empty without one.
    model: the network's resolved config (results.json metadata), for its cost and its switches.
    training_time: training_time.json (steps, wall_s, cpu_s of the whole training), or None.
    """

    variant: str
    seed: int
    folder: Path
    sets: dict[str, dict[str, float]]
    per_image: dict[tuple[str, str], dict[str, float]]
    curve: list[dict[str, float]]
    model: dict[str, Any]
    training_time: dict[str, float] | None = None

    def mean(self, metric: str = "psnr") -> float:
        """Unweighted mean of the per-set means (the papers' "average")."""
        return statistics.fmean(s[metric] for s in self.sets.values())

    def scores(self, metric: str = "psnr") -> dict[str, dict[str, float]]:
        """Per test set, {image name: score}."""
        out: dict[str, dict[str, float]] = {}
        for (set_name, name), row in self.per_image.items():
            out.setdefault(set_name, {})[name] = row[metric]
        return out


def read_run(folder: str | Path) -> Run:
    """Reads one point's folder (<variant>/seed<seed>/ of a study)."""
    folder = Path(folder)
    if not folder.name.startswith("seed") or not folder.name[4:].isdigit():
        raise ValueError(f"{folder}: a study's run folder is named <variant>/seed<N>")
    results = json.loads((folder / "results.json").read_text())
    per_image: dict[tuple[str, str], dict[str, float]] = {}
    with (folder / "per_image.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            key = (row.pop("set"), row.pop("name"))
            if key in per_image:
                raise ValueError(f"{folder / 'per_image.csv'}: image {key} is listed twice")
            per_image[key] = {k: float(v) for k, v in row.items() if v != ""}
    curve = []
    if (folder / CURVE_FILE).is_file():
        with (folder / CURVE_FILE).open(newline="") as f:
            curve = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    return Run(
        variant=folder.parent.name,
        seed=int(folder.name[4:]),
        folder=folder,
        sets={k: v for k, v in results["sets"].items() if k != "mean"},
        per_image=per_image,
        curve=curve,
        model=results["metadata"].get("model", {}),
        training_time=(
            json.loads((folder / TIME_FILE).read_text()) if (folder / TIME_FILE).is_file() else None
        ),
    )


def read_runs(study_dir: str | Path, finished_only: bool = True) -> list[Run]:
    """Every point of a study folder (logs/ablation/<study>), `full` first, then by variant
    and seed. With `finished_only`, points still training (no finished.json) are left out."""
    study_dir = Path(study_dir)
    marker = "finished.json" if finished_only else "results.json"
    folders = sorted(study_dir.glob(f"*/seed*/{marker}"))
    if not folders:
        raise FileNotFoundError(
            f"no finished runs under {study_dir}: expected <variant>/seed<N>/{marker}, as "
            "`derain-train -m experiment=ablation study.name=NAME ...` writes them into "
            "logs/ablation/NAME"
        )
    runs = [read_run(path.parent) for path in folders]
    return sorted(runs, key=lambda r: (r.variant != REFERENCE, r.variant, r.seed))


def training_cpu_hours(runs: Iterable[Run]) -> float:
    """CPU hours the runs' training took (training_time.json; runs without one count 0)."""
    return sum(r.training_time["cpu_s"] for r in runs if r.training_time) / 3600


def by_variant(runs: Iterable[Run]) -> dict[str, list[Run]]:
    grouped: dict[str, list[Run]] = {}
    for run in runs:
        grouped.setdefault(run.variant, []).append(run)
    return grouped


# ----------------------------------------------------------------------------- statistics
@dataclass
class Spread:
    """Mean and sample standard deviation over seeds (std is NaN for one seed)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        values = list(values)
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        return cls(statistics.fmean(values), std, len(values))

    def __str__(self) -> str:
        return f"{self.mean:.2f}" if math.isnan(self.std) else f"{self.mean:.2f} ± {self.std:.2f}"


@dataclass
class Interval:
    """A paired comparison of a variant with the reference on one metric.

    delta: mean over seeds, sets (unweighted) and images of variant − reference.
    low, high: the bootstrap interval of delta at `confidence`.
    """

    delta: float
    low: float
    high: float
    confidence: float
    seeds: list[int]
    images: int  # paired images per seed

    @property
    def verdict(self) -> str:
        """better / worse (the interval excludes 0) or not resolved (it straddles 0)."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "not resolved"


def paired_differences(
    runs: Sequence[Run], variant: str, reference: str = REFERENCE, metric: str = "psnr"
) -> tuple[list[int], dict[str, np.ndarray]]:
    """(seeds, {set: seeds × images array of variant − reference}) over the seeds both have.

    Raises ValueError when they share no seed, or a run scored other images than its pair."""
    grouped = by_variant(runs)
    for name in (variant, reference):
        if name not in grouped:
            raise ValueError(
                f"no finished runs of {name!r}: the study holds {', '.join(grouped) or 'none'}"
            )
    mine = {r.seed: r for r in grouped[variant]}
    theirs = {r.seed: r for r in grouped[reference]}
    seeds = sorted(set(mine) & set(theirs))
    if not seeds:
        raise ValueError(
            f"{variant!r} (seeds {sorted(mine)}) and {reference!r} (seeds {sorted(theirs)}) "
            "share no seed: a paired comparison needs both trained with the same seeds"
        )
    arrays: dict[str, list[list[float]]] = {}
    names: dict[str, list[str]] = {}
    for seed in seeds:
        a, b = mine[seed].scores(metric), theirs[seed].scores(metric)
        if a.keys() != b.keys() or any(a[s].keys() != b[s].keys() for s in a):
            raise ValueError(
                f"{mine[seed].folder} and {theirs[seed].folder} scored different test images: "
                "pairs need the same test sets"
            )
        for set_name in sorted(a):
            order = names.setdefault(set_name, sorted(a[set_name]))
            if sorted(a[set_name]) != order:
                raise ValueError(
                    f"{mine[seed].folder}: test set {set_name} holds other images than at "
                    f"seed {seeds[0]}: every seed must be tested on the same images"
                )
            arrays.setdefault(set_name, []).append([a[set_name][n] - b[set_name][n] for n in order])
    return seeds, {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}


def paired_bootstrap(
    differences: dict[str, np.ndarray],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high): the percentile bootstrap interval of the mean paired difference.

    differences: per test set, a seeds × images array. The statistic is the mean over sets
    (unweighted) of the mean over seeds and images. Each resample draws seeds with replacement
    and, per set, images with replacement, so the interval covers both the images' and the
    seeds' spread (a two-way resampling that scipy.stats.bootstrap does not offer). The same
    `seed` gives the same interval.
    """
    if not differences:
        raise ValueError("no paired differences to resample")
    rng = np.random.default_rng(seed)
    n_seeds = next(iter(differences.values())).shape[0]
    estimate = statistics.fmean(float(d.mean()) for d in differences.values())
    stats = np.empty(resamples)
    chunk = 1000  # resamples drawn at once: bounds memory for large test sets
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        seeds = rng.integers(0, n_seeds, size=(count, n_seeds))
        total = np.zeros(count)
        for d in differences.values():
            images = rng.integers(0, d.shape[1], size=(count, d.shape[1]))
            total += d[seeds[:, :, None], images[:, None, :]].mean(axis=(1, 2))
        stats[start : start + count] = total / len(differences)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return estimate, float(low), float(high)


def compare(
    runs: Sequence[Run],
    variant: str,
    reference: str = REFERENCE,
    metric: str = "psnr",
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Interval:
    """The paired difference variant − reference on `metric`, its interval and verdict."""
    seeds, differences = paired_differences(runs, variant, reference, metric)
    delta, low, high = paired_bootstrap(differences, confidence, resamples, seed)
    images = sum(d.shape[1] for d in differences.values())
    return Interval(delta, low, high, confidence, seeds, images)


# ----------------------------------------------------------------------------- the table
@dataclass
class Cost:
    params: int
    gmacs: float
    latency_ms: float
    size: int


def measure_costs(runs: Sequence[Run], size: int = 256, latency_runs: int = 5) -> dict[str, Cost]:
    """Parameters, GMACs and median CPU latency of each variant's network at size² (one
    forward pass, `derain.studies.profiling`), built from its runs' model config."""
    from hydra.utils import instantiate

    from derain.studies.profiling import profile_model

    costs = {}
    for name, group in by_variant(runs).items():
        network = instantiate(group[0].model)
        prof = profile_model(name, network, size=size, runs=latency_runs)
        costs[name] = Cost(prof.params, prof.gmacs, prof.latency_ms_median, size)
    return costs


@dataclass
class VariantRow:
    """One variant of a study: quality over seeds, the paired difference to the reference."""

    variant: str
    change: str
    seeds: list[int]
    psnr: Spread
    ssim: Spread
    psnr_per_set: dict[str, Spread]
    delta_psnr: Interval | None = None
    delta_ssim: Interval | None = None
    cost: Cost | None = None
    steps: int | None = None
    train_cpu_s: float | None = None  # mean over seeds of the training's CPU seconds


@dataclass
class StudyTable:
    rows: list[VariantRow]
    reference: str = REFERENCE
    metadata: dict[str, Any] = field(default_factory=dict)

    def row(self, variant: str) -> VariantRow:
        return next(r for r in self.rows if r.variant == variant)

    @property
    def sets(self) -> list[str]:
        return list(self.rows[0].psnr_per_set) if self.rows else []

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per variant (the CSV's rows)."""
        records = []
        for r in self.rows:
            rec: dict[str, Any] = {
                "variant": r.variant,
                "change": r.change,
                "seeds": " ".join(map(str, r.seeds)),
                "steps": r.steps,
                "psnr_mean": r.psnr.mean,
                "psnr_std": r.psnr.std,
                "ssim_mean": r.ssim.mean,
                "ssim_std": r.ssim.std,
            }
            for s, spread in r.psnr_per_set.items():
                rec[f"psnr_{s}_mean"], rec[f"psnr_{s}_std"] = spread.mean, spread.std
            for metric in ("psnr", "ssim"):
                interval = getattr(r, f"delta_{metric}")
                rec[f"delta_{metric}"] = interval.delta if interval else None
                rec[f"delta_{metric}_low"] = interval.low if interval else None
                rec[f"delta_{metric}_high"] = interval.high if interval else None
                rec[f"verdict_{metric}"] = interval.verdict if interval else None
            rec["train_cpu_s"] = r.train_cpu_s
            rec["params"] = r.cost.params if r.cost else None
            rec["gmacs"] = r.cost.gmacs if r.cost else None
            rec["latency_ms"] = r.cost.latency_ms if r.cost else None
            records.append(rec)
        return records

    def to_markdown(self) -> str:
        """Quality (mean ± std over seeds), the paired Δ PSNR with its interval and verdict,
        and cost, one row per variant."""
        confidence = next((r.delta_psnr.confidence for r in self.rows if r.delta_psnr), 0.95)
        cost = next((r.cost for r in self.rows if r.cost), None)
        header = ["variant", "change", "seeds"]
        header += [f"{s} PSNR" for s in self.sets]
        header += ["mean PSNR", "mean SSIM", f"Δ PSNR [{confidence:.0%} CI]", "verdict"]
        timed = any(r.train_cpu_s is not None for r in self.rows)
        if timed:
            header.append("training CPU min")
        if cost:
            header += ["params", f"GMACs @{cost.size}²", f"CPU ms @{cost.size}²"]
        lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * (len(header) - 2)]
        for r in self.rows:
            cells = [
                f"**{r.variant}**" if r.variant == self.reference else r.variant,
                r.change,
                str(len(r.seeds)),
            ]
            cells += [str(r.psnr_per_set[s]) for s in self.sets]
            cells += [str(r.psnr), f"{r.ssim.mean:.4f}"]
            d = r.delta_psnr
            cells += (
                [f"{d.delta:+.2f} [{d.low:+.2f}, {d.high:+.2f}]", d.verdict] if d else ["–", "–"]
            )
            if timed:
                cells.append("–" if r.train_cpu_s is None else f"{r.train_cpu_s / 60:.1f}")
            if cost:
                c = r.cost
                cells += (
                    [f"{c.params / 1e3:,.1f}k", f"{c.gmacs:.3f}", f"{c.latency_ms:.1f}"]
                    if c
                    else ["–"] * 3
                )
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "PSNR: Y channel, dB, mean ± std over seeds; Δ: paired per test image and seed "
            f"against `{self.reference}`, mean over sets; verdict: better / worse when the "
            "interval excludes 0, else not resolved.",
        ]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """study.csv, study.md and study.json in `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / "study.csv", "markdown": out / "study.md", "json": out / "study.json"}
        records = self.records()
        with paths["csv"].open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["variant"])
            writer.writeheader()
            writer.writerows(records)
        paths["markdown"].write_text(self.to_markdown())
        paths["json"].write_text(
            json.dumps(
                {"reference": self.reference, "metadata": self.metadata, "records": records},
                indent=2,
                default=str,
            )
        )
        return paths


def switches(model: dict[str, Any], reference: dict[str, Any]) -> str:
    """The network arguments in which `model` differs from `reference`, as `key=value`."""
    changed = {k: v for k, v in model.items() if reference.get(k) != v}
    if not changed:
        return "(reference)"
    return ", ".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in changed.items()
    )


def study_table(
    runs: Sequence[Run],
    reference: str = REFERENCE,
    costs: dict[str, Cost] | None = None,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> StudyTable:
    """Per variant: mean ± std over seeds of the mean PSNR/SSIM (and PSNR per test set), the
    paired Δ to `reference` with its bootstrap interval and verdict, and `costs` when given."""
    grouped = by_variant(runs)
    ref_model = grouped[reference][0].model if reference in grouped else {}
    rows = []
    for name, group in grouped.items():
        sets = list(group[0].sets)
        row = VariantRow(
            variant=name,
            change=switches(group[0].model, ref_model) if ref_model else "",
            seeds=[r.seed for r in group],
            psnr=Spread.of([r.mean("psnr") for r in group]),
            ssim=Spread.of([r.mean("ssim") for r in group]),
            psnr_per_set={s: Spread.of([r.sets[s]["psnr"] for r in group]) for s in sets},
            cost=(costs or {}).get(name),
            steps=_last_step(group),
            train_cpu_s=_mean_cpu(group),
        )
        if reference in grouped and name != reference:
            row.delta_psnr = compare(runs, name, reference, "psnr", confidence, resamples, seed)
            row.delta_ssim = compare(runs, name, reference, "ssim", confidence, resamples, seed)
        rows.append(row)
    return StudyTable(rows, reference)


def _mean_cpu(group: Sequence[Run]) -> float | None:
    seconds = [r.training_time["cpu_s"] for r in group if r.training_time]
    return statistics.fmean(seconds) if seconds else None


def _last_step(group: Sequence[Run]) -> int | None:
    """The steps every run of `group` trained (None when they differ or are unknown)."""
    steps = {
        int(r.training_time["steps"] if r.training_time else r.curve[-1]["step"])
        for r in group
        if r.training_time or r.curve
    }
    return steps.pop() if len(steps) == 1 else None


# ----------------------------------------------------------------------------- curves
def learning_curves(
    runs: Sequence[Run], metric: str = "val/psnr"
) -> dict[str, dict[int, list[dict[str, float]]]]:
    """Per variant and seed, the curve rows (step, wall_s, cpu_s, `metric`) that hold `metric`."""
    curves: dict[str, dict[int, list[dict[str, float]]]] = {}
    for run in runs:
        rows = [r for r in run.curve if metric in r]
        curves.setdefault(run.variant, {})[run.seed] = rows
    return curves


def curve_gaps(
    runs: Sequence[Run], metric: str = "val/psnr", reference: str = REFERENCE
) -> dict[str, list[tuple[int, float, int]]]:
    """Per variant, its gap to `reference` along training: (step, mean over seeds of the
    variant's `metric` minus the reference's at that step and seed, the seeds averaged).

    Paired like the table's Δ: only steps where both runs of a seed validated count. Whether a
    gap keeps its sign from the middle of the budget to its end says whether the budget
    decided the verdict; validation sets are small, so read the trend, not a single step.
    """
    curves = learning_curves(runs, metric)
    base = curves.get(reference, {})
    gaps: dict[str, list[tuple[int, float, int]]] = {}
    for name, seeds in curves.items():
        if name == reference:
            continue
        by_step: dict[int, list[float]] = {}
        for seed, rows in seeds.items():
            theirs = {int(r["step"]): r[metric] for r in base.get(seed, [])}
            for row in rows:
                step = int(row["step"])
                if step in theirs:
                    by_step.setdefault(step, []).append(row[metric] - theirs[step])
        gaps[name] = [
            (step, statistics.fmean(values), len(values))
            for step, values in sorted(by_step.items())
        ]
    return gaps


def plot_curve_gaps(runs: Sequence[Run], metric: str = "val/psnr") -> Figure:
    """Each variant's gap to the reference along training (`curve_gaps`), a line at 0."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    names = list(learning_curves(runs, metric))
    for name, points in curve_gaps(runs, metric).items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3,
                color=f"C{names.index(name)}", label=name)  # fmt: skip
    ax.axhline(0, color="k", linewidth=1)
    ax.set_xlabel("optimiser steps")
    ax.set_ylabel(f"{metric} − {REFERENCE}'s, mean over seeds (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Gap to {REFERENCE} during training (validation set)")
    return fig


def plot_learning_curves(
    runs: Sequence[Run], metric: str = "val/psnr", xs: Sequence[str] = ("step", "cpu_s")
) -> Figure:
    """One panel per x (step, cpu_s or wall_s): `metric` of every run, a colour per variant
    (one line per seed)."""
    labels = {"step": "optimiser steps", "cpu_s": "training CPU seconds", "wall_s": "training s"}
    fig = Figure(figsize=(5.5 * len(xs), 4), layout="constrained")
    axes = fig.subplots(1, len(xs), squeeze=False)[0]
    curves = learning_curves(runs, metric)
    for ax, x in zip(axes, xs, strict=True):
        for i, (name, seeds) in enumerate(curves.items()):
            for j, rows in enumerate(seeds.values()):
                ax.plot(
                    [r[x] for r in rows],
                    [r[metric] for r in rows],
                    color=f"C{i}",
                    linewidth=2 if name == REFERENCE else 1,
                    alpha=0.8,
                    label=name if j == 0 else None,
                )
        ax.set_xlabel(labels.get(x, x))
        ax.set_ylabel(f"{metric} (dB)" if "psnr" in metric else metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Learning curves (one line per seed)")
    return fig


def plot_deltas(table: StudyTable, metric: str = "psnr") -> Figure:
    """Each variant's paired Δ to the reference with its interval (a line at 0)."""
    rows = [r for r in table.rows if getattr(r, f"delta_{metric}") is not None]
    fig = Figure(figsize=(6, 1 + 0.5 * max(1, len(rows))), layout="constrained")
    ax = fig.add_subplot()
    for i, r in enumerate(rows):
        d = getattr(r, f"delta_{metric}")
        ax.errorbar(
            d.delta, i, xerr=[[d.delta - d.low], [d.high - d.delta]], fmt="o", capsize=4,
            color={"better": "C2", "worse": "C3"}.get(d.verdict, "C7"),
        )  # fmt: skip
    ax.axvline(0, color="k", linewidth=1)
    ax.set_yticks(range(len(rows)), [r.variant for r in rows])
    unit = " (dB)" if metric == "psnr" else ""
    ax.set_xlabel(f"Δ {metric.upper()}{unit} against {table.reference}, paired")
    ax.grid(alpha=0.3, axis="x")
    return fig


def plot_quality_vs_cost(table: StudyTable) -> Figure:
    """Mean PSNR (± std over seeds) against GMACs, one labelled point per variant."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for r in table.rows:
        if r.cost is None:
            continue
        std = 0.0 if math.isnan(r.psnr.std) else r.psnr.std
        ax.errorbar(
            r.cost.gmacs,
            r.psnr.mean,
            yerr=std,
            fmt="*" if r.variant == table.reference else "o",
            capsize=3,
        )
        ax.annotate(
            r.variant,
            (r.cost.gmacs, r.psnr.mean),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    ax.set_xlabel("GMACs per forward pass")
    ax.set_ylabel("mean PSNR over test sets (dB)")
    ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- launching
def sweep_command(
    variants: Sequence[str], seeds: Sequence[int], study: str, overrides: Sequence[str] = ()
) -> list[str]:
    """The `derain-train -m experiment=ablation ...` command line of a study (this Python's),
    for a notebook or script that launches a sweep itself; `overrides` come last."""
    import sys

    return [
        sys.executable,
        "-m",
        "derain.cli.train",
        "-m",
        "experiment=ablation",
        f"model/ablation={','.join(variants)}",
        f"seed={','.join(str(s) for s in seeds)}",
        f"study.name={study}",
        *overrides,
    ]

"""Ablation studies of the ELF network (notebooks/01_ablation.ipynb calls this).

A study trains the full network and each variant of `conf/model/ablation/` under one budget and
one seed (a `Scale`: Hydra overrides of conf/train.yaml shared by every variant), scores them on
the test sets with the papers' protocol (Y-channel PSNR/SSIM), profiles their cost and tabulates
the differences to the full network:

    study = AblationStudy(out_dir="logs/ablation/mine", scale="full")
    table = study.run()                    # trains and tests every variant, one run folder each
    study.report(table)                    # ablation.{csv,md,json}, two plots, W&B when chosen

The budgets are in `derain.studies.budgets`; a look inside one trained network in
`derain.studies.inspection`.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from derain.paths import config_dir
from derain.studies.budgets import Scale, get_scale
from derain.studies.profiling import profile_model

REFERENCE = "full"  # the variant every Δ is taken against: conf/model/ablation/full.yaml


# ----------------------------------------------------------------------------- variants
def variant_names() -> list[str]:
    """The ablations of conf/model/ablation/, the reference (`full`) first, then by name."""
    names = sorted(p.stem for p in (config_dir() / "model" / "ablation").glob("*.yaml"))
    return sorted(names, key=lambda n: n != REFERENCE)


def variant_description(name: str) -> str:
    """The one-line comment of conf/model/ablation/NAME.yaml (what the variant changes)."""
    path = config_dir() / "model" / "ablation" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown ablation {name!r}: no {path}; choose one of {', '.join(variant_names())}"
        )
    for line in path.read_text().splitlines():
        text = line.lstrip("#").strip()
        if line.startswith("#") and text and not text.startswith("@package"):
            return text
    return name


def run_folder(task: str, scale: str) -> Path:
    """A fresh folder logs/<task>/<scale>/<time> under the checkout (else the working folder)."""
    root = config_dir().parent
    if not (root / "pyproject.toml").is_file():  # an installed wheel: conf/ sits in the package
        root = Path.cwd()
    return root / "logs" / task / scale / time.strftime("%Y-%m-%d_%H-%M-%S")


# ----------------------------------------------------------------------------- results
@dataclass
class VariantResult:
    """One trained and tested variant.

    test: per test set, the papers' metrics of `derain.training.train` (psnr, ssim in dB / [0,1],
    input_psnr, input_ssim of the rainy input, images).
    """

    variant: str
    description: str
    switches: dict[str, Any]  # the model arguments that differ from the reference variant
    params: int
    gmacs: float
    latency_ms: float
    test: dict[str, dict[str, float]]
    steps: int
    train_seconds: float
    run_dir: str = ""
    checkpoint: str = ""

    @property
    def change(self) -> str:
        if not self.switches:
            return "(reference)"
        return ", ".join(f"{k}={_yaml_value(v)}" for k, v in self.switches.items())

    def mean(self, metric: str) -> float:
        """Unweighted mean of `metric` over the test sets (the papers' "average")."""
        return statistics.fmean(r[metric] for r in self.test.values())


@dataclass
class AblationTable:
    """The variants of one study and their differences to the reference variant."""

    rows: list[VariantResult]
    scale: str = ""
    profile_size: int = 256
    metadata: dict[str, Any] = field(default_factory=dict)
    reference: str = REFERENCE

    @property
    def sets(self) -> list[str]:
        return list(self.rows[0].test) if self.rows else []

    def reference_row(self) -> VariantResult | None:
        return next((r for r in self.rows if r.variant == self.reference), None)

    def delta(self, row: VariantResult, metric: str, test_set: str | None = None) -> float | None:
        """row − reference for `metric` on `test_set` (None: the mean over sets); None without
        a reference row."""
        ref = self.reference_row()
        if ref is None:
            return None
        if test_set is None:
            return row.mean(metric) - ref.mean(metric)
        return row.test[test_set][metric] - ref.test[test_set][metric]

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per variant (the CSV's rows): cost, per-set PSNR/SSIM, means and Δs."""
        records = []
        for row in self.rows:
            rec: dict[str, Any] = {
                "variant": row.variant,
                "change": row.change,
                "params": row.params,
                "gmacs": row.gmacs,
                "latency_ms": row.latency_ms,
            }
            for name in self.sets:
                rec[f"psnr_{name}"] = row.test[name]["psnr"]
                rec[f"ssim_{name}"] = row.test[name]["ssim"]
            rec["psnr_mean"] = row.mean("psnr")
            rec["ssim_mean"] = row.mean("ssim")
            rec["delta_psnr"] = self.delta(row, "psnr")
            rec["delta_ssim"] = self.delta(row, "ssim")
            for name in self.sets:
                rec[f"delta_psnr_{name}"] = self.delta(row, "psnr", name)
            rec["steps"] = row.steps
            rec["train_s"] = row.train_seconds
            records.append(rec)
        return records

    def to_markdown(self) -> str:
        """The table people read: cost, PSNR/SSIM per test set and the mean Δ to the reference."""
        size = self.profile_size
        header = ["variant", "change", "params", f"GMACs @{size}²", f"CPU ms @{size}²"]
        header += [f"{s} PSNR / SSIM" for s in self.sets]
        header += ["mean PSNR / SSIM", "Δ PSNR", "Δ SSIM"]
        lines = [
            f"## ELF ablations ({self.scale} scale)" if self.scale else "## ELF ablations",
            "",
            "| " + " | ".join(header) + " |",
            "| --- | --- |" + " ---: |" * (len(header) - 2),
        ]
        for row in self.rows:
            cells = [
                f"**{row.variant}**" if row.variant == self.reference else row.variant,
                row.change,
                f"{row.params / 1e3:,.1f}k",
                f"{row.gmacs:.3f}",
                f"{row.latency_ms:.1f}",
            ]
            cells += [f"{row.test[s]['psnr']:.2f} / {row.test[s]['ssim']:.4f}" for s in self.sets]
            cells.append(f"{row.mean('psnr'):.2f} / {row.mean('ssim'):.4f}")
            d_psnr, d_ssim = self.delta(row, "psnr"), self.delta(row, "ssim")
            cells.append("–" if d_psnr is None else f"{d_psnr:+.2f}")
            cells.append("–" if d_ssim is None else f"{d_ssim:+.4f}")
            lines.append("| " + " | ".join(cells) + " |")
        if self.rows:
            first = self.rows[0].test
            rainy = ", ".join(
                f"{s} {first[s]['input_psnr']:.2f} / {first[s]['input_ssim']:.4f}" for s in first
            )
            lines += ["", f"Rainy input (no restoration): {rainy}."]
        lines += [
            "",
            "Y-channel PSNR (dB) / SSIM as the papers' protocol; Δ: mean over test "
            f"sets minus `{self.reference}`.",
        ]
        lines += [""] + [f"- `{r.variant}`: {r.description}" for r in self.rows]
        return "\n".join(lines) + "\n"

    def findings(self) -> list[str]:
        """One sentence per variant: its Δ PSNR/SSIM and its cost relative to the reference."""
        ref = self.reference_row()
        if ref is None:
            return [f"no `{self.reference}` row: Δs need the reference variant in the study"]
        sentences = []
        for row in self.rows:
            if row is ref:
                continue
            sentences.append(
                f"{row.variant} ({row.change}): {self.delta(row, 'psnr'):+.2f} dB PSNR, "
                f"{self.delta(row, 'ssim'):+.4f} SSIM at {row.gmacs / ref.gmacs:.2f}× the GMACs "
                f"and {row.params / ref.params:.2f}× the parameters of {ref.variant}"
            )
        return sentences

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Writes ablation.csv, ablation.md and ablation.json into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "csv": out / "ablation.csv",
            "markdown": out / "ablation.md",
            "json": out / "ablation.json",
        }
        records = self.records()
        with paths["csv"].open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["variant"])
            writer.writeheader()
            writer.writerows(records)
        paths["markdown"].write_text(self.to_markdown())
        paths["json"].write_text(
            json.dumps(
                {
                    "scale": self.scale,
                    "profile_size": self.profile_size,
                    "reference": self.reference,
                    "metadata": self.metadata,
                    "rows": [asdict(r) for r in self.rows],
                    "records": records,
                },
                indent=2,
            )
        )
        return paths


# ----------------------------------------------------------------------------- the study
@dataclass
class AblationStudy:
    """Trains and tests each variant under the same budget and seed.

    Args:
        out_dir: the study's folder; each variant's run folder is out_dir/<variant>.
        variants: names of conf/model/ablation/*.yaml (None: all, `full` first).
        scale: a name of `SCALES` or a `Scale`.
        logger: the `logger` config group: csv, tensorboard, wandb, many or none.
        seed: the seed of every run (None: conf/train.yaml's).
        overrides: further Hydra overrides for every variant, e.g. ["model=elf_small",
            "trainer=gpu"], applied after the scale's.
    """

    out_dir: str | Path | None = None
    variants: Sequence[str] | None = None
    scale: str | Scale = "smoke"
    logger: str = "csv"
    seed: int | None = None
    overrides: Sequence[str] = ()
    _composed: dict[str, DictConfig] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.scale = get_scale(self.scale)
        known = variant_names()
        self.variants = list(self.variants or known)
        unknown = [v for v in self.variants if v not in known]
        if unknown:
            raise ValueError(
                f"unknown ablation(s) {', '.join(unknown)}: conf/model/ablation/ holds "
                f"{', '.join(known)}"
            )
        self.out_dir = (
            Path(self.out_dir) if self.out_dir else run_folder("ablation", self.scale.name)
        )

    # ------------------------------------------------------------------ configs
    def budget_overrides(self) -> list[str]:
        """What every variant shares: scale, seed, logger and the extra overrides."""
        shared = [*self.scale.overrides, f"logger={self.logger}", "task_name=ablation"]
        if self.logger == "none":
            shared.append("callbacks.lr_monitor=null")  # Lightning refuses it without a logger
        if self.seed is not None:
            shared.append(f"seed={self.seed}")
        return [*shared, *self.overrides]

    def overrides_for(self, variant: str) -> list[str]:
        return [
            *self.budget_overrides(),
            f"model/ablation={variant}",
            f"run_name={variant}",
            f"tags=[ablation,{self.scale.name},{variant}]",
        ]

    def compose(self, variant: str) -> DictConfig:
        """conf/train.yaml composed for `variant`, writing into out_dir/<variant> (a fresh copy
        on each call: callers may change it)."""
        if variant not in self._composed:
            with initialize_config_dir(version_base=None, config_dir=str(config_dir())):
                self._composed[variant] = compose("train", overrides=self.overrides_for(variant))
        cfg = copy.deepcopy(self._composed[variant])
        # set after composing: Hydra's override grammar would choke on some folder names
        run_dir = self.out_dir / variant
        cfg.paths.root_dir = str(self.out_dir)
        cfg.paths.output_dir = str(run_dir)
        if cfg.get("logger") and "wandb" in cfg.logger:
            # one W&B group per study, so its runs sit together
            cfg.logger.wandb.group = f"ablation-{self.out_dir.name}"
        return cfg

    def switches(self, variant: str) -> dict[str, Any]:
        """The model arguments of `variant` that differ from the reference's."""
        reference = OmegaConf.to_container(self.compose(REFERENCE).model, resolve=True)
        own = OmegaConf.to_container(self.compose(variant).model, resolve=True)
        return {k: v for k, v in own.items() if reference.get(k) != v}

    # ------------------------------------------------------------------ running
    def run_variant(self, variant: str, profile: bool = True) -> VariantResult:
        """Trains and tests `variant` (run folder out_dir/<variant>), then profiles its network
        (`profile=False` skips that: params 0, GMACs and latency NaN)."""
        from derain.training.tasks import (
            train,  # Lightning and the data stack load only when training
        )

        cfg = self.compose(variant)
        start = time.perf_counter()
        try:
            result = train(cfg)
        finally:
            _finish_wandb_run()
        seconds = time.perf_counter() - start
        checkpoint = Path(result["output_dir"]) / "checkpoints" / "last.ckpt"
        steps = torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]
        params, gmacs, latency = 0, math.nan, math.nan
        if profile:
            network = instantiate(cfg.model)
            prof = profile_model(
                variant, network, size=self.scale.profile_size, runs=self.scale.latency_runs
            )
            params, gmacs, latency = prof.params, prof.gmacs, prof.latency_ms_median
        return VariantResult(
            variant=variant,
            description=variant_description(variant),
            switches=self.switches(variant),
            params=params,
            gmacs=gmacs,
            latency_ms=latency,
            test=result["test"],
            steps=int(steps),
            train_seconds=seconds,
            run_dir=str(result["output_dir"]),
            checkpoint=str(checkpoint),
        )

    def run(self, progress: Callable[[str], None] | None = print) -> AblationTable:
        """Runs every variant in turn; returns their table."""
        rows = []
        for i, variant in enumerate(self.variants, 1):
            if progress:
                progress(f"[{i}/{len(self.variants)}] {variant}: {variant_description(variant)}")
            rows.append(self.run_variant(variant))
            if progress:
                r = rows[-1]
                progress(
                    f"[{i}/{len(self.variants)}] {variant}: {r.steps} steps in "
                    f"{r.train_seconds:.0f} s, mean PSNR {r.mean('psnr'):.2f} dB"
                )
        return AblationTable(
            rows,
            scale=self.scale.name,
            profile_size=self.scale.profile_size,
            metadata=self.metadata(),
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "scale": asdict(self.scale),
            "budget_overrides": self.budget_overrides(),
            "variants": list(self.variants),
            "out_dir": str(self.out_dir),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        }

    def report(self, table: AblationTable) -> dict[str, Path]:
        """Writes the table (CSV, Markdown, JSON) and both plots into out_dir; logs them to W&B
        when the study's logger includes wandb. Returns the written paths."""
        paths = table.write(self.out_dir)
        for name, plot in (("psnr_bars", plot_psnr_bars), ("psnr_vs_gmacs", plot_psnr_vs_gmacs)):
            paths[name] = self.out_dir / f"{name}.png"
            plot(table).savefig(paths[name], dpi=120, bbox_inches="tight")
        cfg = self.compose(table.rows[0].variant if table.rows else REFERENCE)
        if cfg.get("logger") and "wandb" in cfg.logger:
            log_to_wandb(table, paths, cfg.logger.wandb, self.out_dir)
        return paths


def wandb_table(table: AblationTable) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the table's records, for `wandb.Table`."""
    records = table.records()
    columns = list(records[0]) if records else []
    return columns, [[r[c] for c in columns] for r in records]


def log_to_wandb(
    table: AblationTable, paths: dict[str, Path], wandb_cfg: DictConfig, out_dir: Path
) -> None:
    """Logs the table and the plots as one summary run of the study's W&B group."""
    import wandb

    run = wandb.init(
        project=wandb_cfg.project,
        group=wandb_cfg.group,
        name=f"{wandb_cfg.group}-summary",
        job_type="ablation-summary",
        dir=str(out_dir),
        mode="offline" if wandb_cfg.get("offline") else "online",
        config=table.metadata,
        tags=["ablation", table.scale],
    )
    columns, data = wandb_table(table)
    payload: dict[str, Any] = {"ablation/table": wandb.Table(columns=columns, data=data)}
    for name in ("psnr_bars", "psnr_vs_gmacs"):
        if name in paths:
            payload[f"ablation/{name}"] = wandb.Image(str(paths[name]))
    run.log(payload)
    run.finish()


def _finish_wandb_run() -> None:
    """Closes the W&B run a WandbLogger left open, so the next variant starts its own run."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def _yaml_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# ----------------------------------------------------------------------------- plots
def plot_psnr_bars(table: AblationTable) -> Figure:
    """Grouped bars: PSNR of each variant on each test set; dashed lines: the rainy input."""
    fig = Figure(figsize=(1.6 + 1.3 * max(1, len(table.rows)), 4), layout="constrained")
    ax = fig.add_subplot()
    sets = table.sets
    width = 0.8 / max(1, len(sets))
    colors = [f"C{i}" for i in range(len(sets))]
    for j, (name, color) in enumerate(zip(sets, colors, strict=True)):
        xs = [i + (j - (len(sets) - 1) / 2) * width for i in range(len(table.rows))]
        values = [r.test[name]["psnr"] for r in table.rows]
        bars = ax.bar(xs, values, width, label=name, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.axhline(table.rows[0].test[name]["input_psnr"], color=color, linestyle="--", linewidth=1)
    ax.set_xticks(range(len(table.rows)), [r.variant for r in table.rows], rotation=20)
    ax.set_ylabel("PSNR (dB, Y channel)")
    ax.set_title(f"PSNR per variant ({table.scale} scale); dashed: rainy input")
    ax.legend(fontsize=8)
    return fig


def plot_psnr_vs_gmacs(table: AblationTable) -> Figure:
    """Mean PSNR over the test sets against GMACs, one labelled point per variant."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for row in table.rows:
        marker = "*" if row.variant == table.reference else "o"
        ax.scatter(row.gmacs, row.mean("psnr"), s=120 if marker == "*" else 50, marker=marker)
        ax.annotate(
            row.variant,
            (row.gmacs, row.mean("psnr")),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    ax.set_xlabel(f"GMACs (3×{table.profile_size}×{table.profile_size} input)")
    ax.set_ylabel("mean PSNR over test sets (dB)")
    ax.set_title(f"Quality against cost ({table.scale} scale)")
    ax.grid(alpha=0.3)
    return fig

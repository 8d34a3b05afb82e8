"""The profile task behind `derain-profile`: parameters, GMACs, latency, peak memory and
efficiency of ELF presets (conf/profile.yaml), measured by `derain.studies.profiling`."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from derain.models import PRESETS
from derain.runtime.console import make_console
from derain.runtime.memory import retain_freed_memory
from derain.studies.profiling import dense_conv_throughput, profile_model


def _model_configs(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(name, model config) pairs: the chosen `model`, or each of `presets` composed from conf/."""
    if "model" in cfg:  # model=NAME chosen (the defaults list has none)
        if not HydraConfig.initialized():  # composed in Python: no record of the choice
            return [("model", cfg.model)]
        choice = HydraConfig.get().runtime.choices
        name = choice.get("model")
        if choice.get("model/ablation"):
            name = f"{name}+{choice['model/ablation']}"
        return [(name, cfg.model)]
    if not cfg.presets:
        raise ValueError("nothing to profile: give model=NAME or a non-empty presets=[...] list")
    composed = []
    for name in cfg.presets:
        sub = hydra.compose(config_name="profile", overrides=[f"model={name}"])
        composed.append((name, sub.model))
    return composed


def run(cfg: DictConfig, console: Console | None = None) -> dict:
    """Profiles the models `cfg` names, prints the table on `console` (the terminal by default)
    and writes it as JSON (with the config) to `cfg.output`, or profile.json in the run folder
    under Hydra; returns the report: machine, size, batch, models (one dict per model) and
    `written` (the JSON file, or None)."""
    report = measure(cfg)
    console = console or make_console()
    print_report(report, console)
    output = cfg.output
    if output is None and HydraConfig.initialized():
        output = Path(HydraConfig.get().runtime.output_dir) / "profile.json"
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"config": OmegaConf.to_container(cfg), **report}, indent=2))
        console.print(f"wrote {output}")
    return {**report, "written": output}


def measure(cfg: DictConfig) -> dict:
    """The report of `run`, measured without printing or writing."""
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = torch.device(cfg.device)
    # measure what a user gets: derain-predict, derain.load and training all keep freed memory
    retained = bool(cfg.retain_freed_memory) and retain_freed_memory()
    conv = dense_conv_throughput(device)
    rows = []
    for name, model_cfg in _model_configs(cfg):
        model = hydra.utils.instantiate(model_cfg)
        preset = PRESETS.get(name)
        profile = profile_model(
            name,
            model,
            size=cfg.size,
            batch=cfg.batch,
            runs=cfg.runs,
            warmup=cfg.warmup,
            device=device,
            conv_gmacs_per_s=conv.gmacs_per_s,
            reference_params=preset.reference_params if preset else None,
            reference_gmacs=preset.reference_gmacs_256 if preset and cfg.size == 256 else None,
        )
        rows.append(profile.to_dict())
    return {
        "machine": {
            "device": str(device),
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "retain_freed_memory": retained,
            "dense_conv_gmacs_per_s": conv.gmacs_per_s,
            "dense_conv_layout": conv.layout,
        },
        "size": cfg.size,
        "batch": cfg.batch,
        "models": rows,
    }


def print_report(report: dict, console: Console) -> None:
    m = report["machine"]
    table = Table(
        title=f"ELF profile @ {report['batch']}×3×{report['size']}² on {m['device']} "
        f"({m['threads']} threads, dense conv {m['dense_conv_gmacs_per_s']:.1f} GMAC/s, freed "
        f"memory {'retained' if m.get('retain_freed_memory') else 'returned to the OS'})"
    )
    for column in (
        "model",
        "params",
        "GMACs",
        "latency ms",
        "peak act. MiB",
        "GMAC/s",
        "efficiency",
    ):
        table.add_column(column, justify="right" if column != "model" else "left")
    for r in report["models"]:
        eff = "–" if r["efficiency"] is None else f"{r['efficiency']:.3f}"
        table.add_row(
            r["name"],
            f"{r['params']:,}",
            f"{r['gmacs']:.2f}",
            f"{r['latency_ms_median']:.1f}",
            f"{r['peak_memory_mib']:.0f}",
            f"{r['gmacs_per_s']:.1f}",
            eff,
        )
    console.print(table)

"""Hydra callbacks for sweeps (`-m`): a scaling table of the runs' training throughput."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from derain.runtime.launch import launcher_rank


def scaling_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per run of a sweep folder that recorded throughput.json (job number order)."""
    rows = []
    for path in sorted(
        Path(sweep_dir).glob("*/throughput.json"), key=lambda p: _job_number(p.parent)
    ):
        record = json.loads(path.read_text())
        overrides = path.parent / ".hydra" / "overrides.yaml"
        record["job"] = path.parent.name
        record["overrides"] = list(OmegaConf.load(overrides)) if overrides.is_file() else []
        rows.append(record)
    # keep only what tells the runs apart
    shared = set.intersection(*(set(r["overrides"]) for r in rows)) if rows else set()
    for r in rows:
        r["overrides"] = " ".join(o for o in r["overrides"] if o not in shared)
    return rows


def _job_number(folder: Path) -> int:
    return int(folder.name) if folder.name.isdigit() else 1 << 30


def scaling_markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown table: processes, precision, samples/s, s/epoch and speed-up over the first run."""
    lines = [
        "| job | processes | precision | samples/s | s/epoch | speed-up | overrides |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    base = next((r["samples_per_s"] for r in rows if r.get("samples_per_s")), None)
    for r in rows:
        rate, epoch = r.get("samples_per_s"), r.get("s_per_epoch")
        speedup = f"{rate / base:.2f}×" if rate and base else "–"
        lines.append(
            f"| {r['job']} | {r['world_size']} | {r['precision']} | "
            f"{rate:.1f} | {epoch:.2f} | {speedup} | `{r['overrides']}` |"
            if rate and epoch
            else f"| {r['job']} | {r['world_size']} | {r['precision']} | – | – | – | `{r['overrides']}` |"
        )
    return "\n".join(lines) + "\n"


class ScalingTable(Callback):
    """Writes scaling.md and scaling.json into the sweep folder when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if launcher_rank():  # under torchrun/srun every process ends the sweep: one writes
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = scaling_rows(sweep_dir)
        if not rows:
            return
        (sweep_dir / "scaling.json").write_text(json.dumps(rows, indent=2))
        table = scaling_markdown(rows)
        (sweep_dir / "scaling.md").write_text(table)
        print(f"\nthroughput of the sweep ({sweep_dir / 'scaling.md'}):\n{table}")

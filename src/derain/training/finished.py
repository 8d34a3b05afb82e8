"""Runs that are not trained twice: the points of a study (conf/experiment/ablation.yaml).

With `skip_finished: true` a run whose folder already holds finished.json (written after its
test results) from the same settings returns those results instead of training again. A long
sweep is therefore resumed, or extended with more seeds, by starting the same command again.
A run stopped before it finished trains again from the start, so that its numbers are those
of an uninterrupted run (a requeued SLURM job still resumes from its own checkpoint). Settings
that do not change what is trained and tested (loggers, tags, folders) may differ between the
two starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from derain.inference.atomic import replacing

FINISHED_FILE = "finished.json"

IGNORED = (
    "paths",
    "logger",
    "tags",
    "run_name",
    "ckpt_path",
    "skip_finished",
    "retain_freed_memory",
)
"""Top-level settings that a finished run may differ in from the one started again."""


def run_settings(cfg: DictConfig) -> dict[str, Any]:
    """The resolved settings that decide a run's results (JSON types); paths inside the run
    folder are relative to it, so a study folder may be moved."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    folder = settings.get("paths", {}).get("output_dir")
    for key in IGNORED:
        settings.pop(key, None)
    return json.loads(
        json.dumps(_relative(settings, str(folder)) if folder else settings, default=str)
    )


def _relative(value: Any, folder: str) -> Any:
    if isinstance(value, dict):
        return {k: _relative(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, folder) for v in value]
    if isinstance(value, str) and value.startswith(folder):
        return "<run folder>" + value[len(folder) :]
    return value


def finished_result(cfg: DictConfig, out_dir: Path) -> dict[str, Any] | None:
    """The stored result of a finished run in `out_dir` (as `derain.training.train` returns
    it, with "skipped": True), or None when it has not finished.

    Raises ValueError when the folder's run finished with other settings: its results stay.
    """
    path = out_dir / FINISHED_FILE
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    settings = run_settings(cfg)
    if stored["settings"] != settings:
        changed = sorted(_differences(stored["settings"], settings))
        raise ValueError(
            f"{out_dir} holds a finished run with other settings ({', '.join(changed[:8])}): "
            "its results are kept. Give the new runs their own folder (for a study: another "
            "study.name), or delete that folder to train it again"
        )
    results = json.loads((out_dir / "results.json").read_text())
    test = {k: v for k, v in results["sets"].items() if k != "mean"}
    return {
        "metrics": stored["metrics"],
        "output_dir": str(out_dir),
        "test": test,
        "paths": stored["paths"],
        "skipped": True,
    }


def record_finished(cfg: DictConfig, result: dict[str, Any]) -> Path:
    """Writes finished.json (the run's settings, final metrics and result files) into its
    folder: the mark `finished_result` looks for."""
    out_dir = Path(result["output_dir"])
    path = out_dir / FINISHED_FILE
    record = {
        "settings": run_settings(cfg),
        "metrics": result["metrics"],
        "paths": result.get("paths", {}),
    }
    with replacing(path) as partial:  # a stop mid-write leaves no half mark behind
        partial.write_text(json.dumps(record, indent=2))
    return path


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]

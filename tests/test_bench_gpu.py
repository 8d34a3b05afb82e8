"""benchmarks/bench_gpu.py: the GPU check's code, run in its CPU smoke mode."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def _load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("derain_bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_quick_cpu_run_prints_the_table_and_checks_every_precision(monkeypatch, tmp_path, capsys):
    script = _load_script(monkeypatch)
    out = tmp_path / "check.json"
    argv = ["--device", "cpu", "--quick", "--steps", "2", "--timed", "1", "--json", str(out)]
    assert script.main(argv) == 0
    report = json.loads(out.read_text())
    rows = {r["check"]: r for r in report["rows"]}
    assert set(rows) == {
        "training fp32, channels-last, eager",
        "training bf16, channels-last, eager",
        "training bf16, contiguous, eager",
        "inference fp32 192×108",
        "inference bf16 192×108",
        "inference fp16 192×108",
    }
    assert all(r["finite"] for r in rows.values())
    # the bf16 loss follows the fp32 one from the same weights on the same photo batches
    agreement = report["agreement"]
    assert len(agreement["loss_fp32"]) == len(agreement["loss_bf16"]) == 2
    assert 0 < agreement["max_relative_difference"] < 0.02
    for name in ("bf16", "fp16"):
        assert rows[f"inference {name} 192×108"]["psnr_vs_fp32"] > 40
    assert all(r["samples_per_s"] > 0 for n, r in rows.items() if n.startswith("training"))
    assert set(report["speed_ups"]) == {"bf16 over fp32", "channels-last over contiguous"}
    assert all(math.isfinite(v) and v > 0 for v in report["speed_ups"].values())
    printed = capsys.readouterr().out
    assert "| inference fp16 192×108 | yes |" in printed and "training speed-ups" in printed

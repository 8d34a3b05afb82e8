"""derain.benchmarks.bench_gpu: the GPU check's code, run in its CPU smoke mode."""

from __future__ import annotations

import json
import math

import pytest

from derain.benchmarks import bench_gpu as script


def test_quick_cpu_run_prints_the_table_and_checks_every_precision(tmp_path, capsys):
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
    # the speed-ups are the ratios of the rows' training rates
    rate = {n: r["samples_per_s"] for n, r in rows.items() if n.startswith("training")}
    base = rate["training bf16, channels-last, eager"]
    assert report["speed_ups"] == {
        "bf16 over fp32": pytest.approx(base / rate["training fp32, channels-last, eager"]),
        "channels-last over contiguous": pytest.approx(
            base / rate["training bf16, contiguous, eager"]
        ),
    }
    assert all(math.isfinite(v) for v in rate.values())
    printed = capsys.readouterr().out
    assert "| inference fp16 192×108 | yes |" in printed and "training speed-ups" in printed


def test_training_rows_say_not_finite_when_the_losses_are_not():
    """Every row's `finite` comes from its own losses, the contiguous row's included."""
    import torch

    args = script.parse_args(["--device", "cpu", "--quick", "--steps", "1", "--timed", "1"])
    from derain.models import ELF

    weights = ELF.from_preset(args.preset).state_dict()
    weights = {
        k: torch.full_like(v, math.nan) if v.is_floating_point() else v for k, v in weights.items()
    }
    rows, _, _ = script.training_rows(weights, args, torch.device("cpu"))
    assert {r["check"]: r["finite"] for r in rows} == {
        "training fp32, channels-last, eager": False,
        "training bf16, channels-last, eager": False,
        "training bf16, contiguous, eager": False,
    }
    assert not script.all_finite([]) and script.all_finite([1.0, torch.ones(2)])
    assert not script.all_finite([torch.tensor([1.0, math.inf])])


def test_table_names_the_device_and_the_compile_time(capsys):
    rows = [
        {"check": "training bf16, channels-last, eager", "first_step_s": 0.5, "finite": True},
        {"check": "training bf16, channels-last, compiled", "first_step_s": 42.5, "finite": False},
    ]
    table = script.print_table(rows, "NVIDIA H200")
    assert table.splitlines()[0].startswith("device: NVIDIA H200, torch ")
    assert "| training bf16, channels-last, compiled | NO | – | – | 42.50 |" in table
    assert table.splitlines()[-1] == (
        "compile time (first compiled step beyond the eager one): 42.0 s"
    )
    assert script.compile_seconds(rows[:1]) is None

"""derain.benchmarks.bench: its figures, its record file and the --check regression gate."""

from __future__ import annotations

import json

import pytest

from derain.models import ELF


@pytest.fixture
def bench(tmp_path, monkeypatch):
    from derain.benchmarks import bench as module

    # never touch the repository's record
    monkeypatch.setattr(module, "RECORDED", tmp_path / "recorded.json")
    return module


def _report(efficiencies: dict[str, float], threads: int = 1) -> dict:
    return {
        "date": "2026-01-01T00:00:00",
        "command": "python -m derain.benchmarks.bench",
        "preset": "elf",
        "machine": {"device": "cpu", "threads": threads},
        "figures": {name: {"efficiency": value} for name, value in efficiencies.items()},
    }


def test_check_passes_within_tolerance_and_fails_beyond_it(bench, capsys):
    bench.record(_report({"inference/eager/256": 0.40, "training/eager/8x128": 0.30}))
    assert json.loads(bench.RECORDED.read_text())["cpu/elf/threads=1"]["efficiency"] == {
        "inference/eager/256": 0.40,
        "training/eager/8x128": 0.30,
    }
    # 0.31 is 22.5% below 0.40: inside the 25% tolerance
    assert bench.check(_report({"inference/eager/256": 0.31, "training/eager/8x128": 0.30})) == 0
    # 0.29 is 27.5% below: a regression, named in the output
    assert bench.check(_report({"inference/eager/256": 0.29, "training/eager/8x128": 0.30})) == 1
    assert "inference/eager/256" in capsys.readouterr().out.split("REGRESSED")[0].splitlines()[-1]


def test_check_without_a_record_for_this_machine_setting_is_an_error(bench):
    bench.record(_report({"inference/eager/256": 0.40}, threads=1))
    # another thread count has no record, and figures never measured cannot be compared
    assert bench.check(_report({"inference/eager/256": 0.40}, threads=2)) == 2
    assert bench.check(_report({"inference/eager/1024": 0.40})) == 2


def test_record_keeps_other_settings(bench):
    bench.record(_report({"inference/eager/256": 0.40}, threads=1))
    bench.record(_report({"inference/eager/256": 0.35}, threads=2))
    recorded = json.loads(bench.RECORDED.read_text())
    assert set(recorded) == {"cpu/elf/threads=1", "cpu/elf/threads=2"}


def test_a_small_run_measures_paired_efficiencies_and_writes_json(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "--preset",
        "elf_tiny",
        "--sizes",
        "48",
        "--runs",
        "2",
        "--no-compile",
        "--no-retain-memory",
    ]
    argv += ["--train-batch", "2", "--train-patch", "32", "--json", str(out), "--record"]
    argv += ["--straightforward"]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    figures = report["figures"]
    assert set(figures) == {
        "inference/straightforward/48",
        "inference/eager/48",
        "training/straightforward/2x32",
        "training/eager/2x32",
    }
    inference, training = figures["inference/eager/48"], figures["training/eager/2x32"]
    # the unoptimised network is timed on the same work
    assert figures["inference/straightforward/48"]["macs"] == inference["macs"]
    assert figures["training/straightforward/2x32"]["macs"] == training["macs"]
    # one forward pass per image; a training step counts 3× the forward MACs of its batch
    tiny = ELF.from_preset("elf_tiny")
    assert inference["macs"] == bench.count_macs_at(tiny, (1, 3, 48, 48))
    assert training["macs"] == 3 * bench.count_macs_at(tiny, (2, 3, 32, 32))
    for figure in figures.values():
        assert len(figure["efficiency_rounds"]) >= 2
        assert 0 < figure["efficiency"] < 5
        assert figure["gmacs_per_s"] == pytest.approx(
            figure["macs"] / 1e9 / (figure["latency_ms_median"] / 1e3)
        )
    assert training["items_per_call"] == 2
    assert 1 < report["machine"]["reference_gmacs_per_s"]["fp32"] < 1000  # any CPU this runs on
    table = capsys.readouterr().out
    assert "inference/eager/48" in table and "training/eager/2x32" in table
    # the record it wrote is what --check compares with
    recorded = json.loads(bench.RECORDED.read_text())["cpu/elf_tiny/threads=1"]["efficiency"]
    assert recorded == {name: f["efficiency"] for name, f in figures.items()}

"""`derain-profile` from the command line."""

from __future__ import annotations

import json
import statistics

import pytest

from helpers import run_cli


def test_profile_prints_a_table_and_writes_json_with_documented_fields(tmp_path):
    out = tmp_path / "p.json"
    proc = run_cli(
        "derain-profile",
        "presets=[elf_tiny,elf_small]",
        "size=32",
        "runs=2",
        f"output={out}",
        cwd=tmp_path,
    )
    assert "elf_tiny" in proc.stdout and "efficiency" in proc.stdout
    report = json.loads(out.read_text())
    assert 1 < report["machine"]["dense_conv_gmacs_per_s"] < 1000  # any CPU this runs on
    assert report["machine"]["dense_conv_layout"] in {"contiguous", "channels_last"}
    assert [m["name"] for m in report["models"]] == ["elf_tiny", "elf_small"]
    for row in report["models"]:
        assert set(row) >= {
            "params",
            "gmacs",
            "latency_ms_median",
            "peak_memory_mib",
            "gmacs_per_s",
            "efficiency",
        }
        assert len(row["latency_ms_runs"]) == 2
        assert row["latency_ms_median"] == pytest.approx(statistics.median(row["latency_ms_runs"]))
        assert row["gmacs_per_s"] == pytest.approx(row["gmacs"] / (row["latency_ms_median"] / 1e3))
        assert row["efficiency"] == row["gmacs_per_s"] / report["machine"]["dense_conv_gmacs_per_s"]
    tiny, small = report["models"]
    assert small["params"] > tiny["params"] and small["gmacs"] > tiny["gmacs"]
    assert small["reference_params"] == small["params"] == 1_223_972
    assert small["reference_gmacs"] is None  # references are for 256² only


def test_profile_one_model_with_an_ablation(tmp_path):
    out = tmp_path / "p.json"
    run_cli(
        "derain-profile",
        "model=elf_tiny",
        "model/ablation=no_rain_prior",
        "size=32",
        "runs=1",
        f"output={out}",
        cwd=tmp_path,
    )
    report = json.loads(out.read_text())
    (row,) = report["models"]
    assert row["name"] == "elf_tiny+no_rain_prior"
    assert report["config"]["model"]["rain_prior"] is False


def test_profile_default_output_goes_to_a_run_folder(tmp_path):
    proc = run_cli("derain-profile", "presets=[elf_tiny]", "size=16", "runs=1", cwd=tmp_path)
    written = list((tmp_path / "logs" / "profile").glob("*/profile.json"))
    assert len(written) == 1
    assert str(written[0].name) in proc.stdout


def test_profile_measures_with_freed_memory_retained_as_users_run(tmp_path):
    for setting, retained, words in ((None, True, "retained"), (False, False, "returned")):
        out = tmp_path / f"{setting}.json"
        extra = [] if setting is None else [f"retain_freed_memory={str(setting).lower()}"]
        args = ["presets=[elf_tiny]", "size=16", "runs=1", f"output={out}", *extra]
        proc = run_cli("derain-profile", *args, cwd=tmp_path)
        assert json.loads(out.read_text())["machine"]["retain_freed_memory"] is retained
        assert f"freed memory {words}" in " ".join(proc.stdout.split())

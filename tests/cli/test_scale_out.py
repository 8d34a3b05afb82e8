"""Multi-process training (real DDP on CPU with gloo) and hardware sweeps."""

from __future__ import annotations

import csv
import json

import pytest

from helpers import TINY, run_cli, run_dirs

DDP = [a for a in TINY if not a.startswith("data.limit")] + ["data.limit=4", "trainer.max_steps=4"]


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_ddp_cpu_two_processes_share_one_run_folder_and_synchronise_metrics(tmp_path):
    # the learning rate follows rank 0's clock (a broadcast every step on both ranks)
    follow_time = [
        "scheduler=cosine",
        "scheduler.follow_max_time=true",
        "trainer.max_time=00:00:30:00",
    ]
    run_cli("derain-train", *DDP, "trainer=ddp_cpu", *follow_time, cwd=tmp_path)
    (run,) = run_dirs(tmp_path)  # one output folder, not one per process
    # both ranks ran: rank 1 logged its own job log into the shared folder
    assert (run / "train_ddp_process_1.log").is_file()
    throughput = json.loads((run / "throughput.json").read_text())
    assert throughput["world_size"] == 2
    # each process validates half of the 2 + 2 validation images; the logged count is the
    # synchronised total
    counts = {
        float(r["val/images"]) for r in _rows(run / "csv" / "metrics.csv") if r.get("val/images")
    }
    assert counts == {4.0}
    # only rank 0 wrote: one logger folder, checkpoints without per-process copies
    assert sorted(p.name for p in (run / "csv").iterdir() if p.is_file()) == [
        "hparams.yaml",
        "metrics.csv",
    ]
    assert not list(tmp_path.glob("**/version_*"))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in names and all("-v" not in n for n in names)
    # the test ran once, on one process, over the whole test sets
    results = json.loads((run / "results.json").read_text())
    assert results["sets"]["synthetic_light"]["images"] == 4


def test_hardware_sweep_records_throughput_and_writes_a_scaling_table(tmp_path):
    proc = run_cli(
        "derain-train",
        "-m",
        *DDP,
        "trainer=ddp_cpu",
        "trainer.devices=1,2",
        "test=false",
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    rows = json.loads((sweep / "scaling.json").read_text())
    assert [r["world_size"] for r in rows] == [1, 2]
    # data.limit=4 at batch 2: four samples an epoch on one process, and on two (one step each)
    for r in rows:
        assert r["samples_per_s"] * r["s_per_epoch"] == pytest.approx(4)
    assert [r["overrides"] for r in rows] == ["trainer.devices=1", "trainer.devices=2"]
    table = (sweep / "scaling.md").read_text()
    one, two = (rows[0]["samples_per_s"], rows[1]["samples_per_s"])
    assert f"| 2 | 32-true | {two:.1f} | {rows[1]['s_per_epoch']:.2f} | {two / one:.2f}× |" in table
    assert "scaling.md" in proc.stdout

"""A killed run resumes from its last checkpoint; earlier files survive."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time

import torch

from helpers import BIN, TINY, run_cli, run_dirs

LONG = [a for a in TINY if not a.startswith(("data.limit", "trainer.max_steps"))] + [
    "data.limit=64",  # 32 steps per epoch
    "trainer.max_steps=60",
    "callbacks.last_checkpoint.every_n_train_steps=3",
    "test=false",
]


def _saved_step(path) -> int | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def test_sigkill_then_resume_from_last_continues_and_finishes(tmp_path):
    proc = subprocess.Popen(
        [str(BIN / "derain-train"), *LONG],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    last, deadline = None, time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            runs = list((tmp_path / "logs" / "train" / "runs").glob("*/checkpoints/last.ckpt"))
            if runs and (_saved_step(runs[0]) or 0) >= 6:
                last = runs[0]
                break
            time.sleep(0.2)
        assert last is not None and proc.poll() is None, "training ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = _saved_step(last)
    assert 6 <= saved < 60

    run_cli("derain-train", *LONG, "ckpt_path=last", cwd=tmp_path)
    killed, resumed = run_dirs(tmp_path)
    assert _saved_step(resumed / "checkpoints" / "last.ckpt") == 60
    with (resumed / "csv" / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("lr-Adam")]
    assert min(steps) >= saved  # picked up where the killed run stopped, not from step 0
    assert _saved_step(killed / "checkpoints" / "last.ckpt") == saved  # untouched

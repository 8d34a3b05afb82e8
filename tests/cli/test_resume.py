"""Exact resume: a run stopped part-way (checkpoint, SIGTERM) and resumed ends where an
uninterrupted one does: same weights, EMA, optimizer and scheduler state, same final step."""

from __future__ import annotations

import csv
import signal
import subprocess
import time

import pytest
import torch

from helpers import BIN, TINY, run_cli, run_dirs

STEPS = 24
# 16 tiles in batches of 2: 8 steps per epoch, so the resumes below fall mid-epoch; a cosine
# schedule past its warm-up and a fast EMA, so that a lost optimizer, scheduler or average shows
BASE = [a for a in TINY if not a.startswith(("data.limit", "trainer.max_steps"))] + [
    "data.limit=16",
    f"trainer.max_steps={STEPS}",
    "test=false",
    "scheduler=cosine",
    "scheduler.warmup_steps=2",
    "callbacks.ema.decay=0.9",
]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_training_state(a, b):
    assert a["global_step"] == b["global_step"] == STEPS
    torch.testing.assert_close(a["state_dict"], b["state_dict"])  # the EMA average
    torch.testing.assert_close(a["current_model_state"], b["current_model_state"])  # raw weights
    torch.testing.assert_close(a["optimizer_states"], b["optimizer_states"])
    assert a["lr_schedulers"] == b["lr_schedulers"]


def _straight_run(cwd, *extra):
    """One uninterrupted run, keeping a checkpoint every 7 steps: (its last.ckpt, step 7's)."""
    cwd.mkdir(parents=True, exist_ok=True)
    run_cli(
        "derain-train",
        *BASE,
        *extra,
        "+callbacks.every7._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.every7.dirpath={cwd / 'every7'}",
        "+callbacks.every7.filename='step{step}'",
        "+callbacks.every7.every_n_train_steps=7",
        "+callbacks.every7.save_top_k=-1",
        "+callbacks.every7.auto_insert_metric_name=false",
        cwd=cwd,
    )
    (run,) = run_dirs(cwd)
    step7 = cwd / "every7" / "step7.ckpt"
    return run / "checkpoints" / "last.ckpt", step7


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return _straight_run(tmp_path_factory.mktemp("straight"))


def test_resuming_mid_epoch_gives_the_weights_of_an_uninterrupted_run(straight, tmp_path):
    last, step7 = straight
    assert _load(step7)["global_step"] == 7  # step 7 of 8 in the first epoch
    run_cli("derain-train", *BASE, f"ckpt_path={step7}", cwd=tmp_path)
    (resumed,) = run_dirs(tmp_path)
    _assert_same_training_state(_load(last), _load(resumed / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_resuming_mid_epoch_under_ddp_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    # two processes: Lightning rebuilds the batch sampler around a DistributedSampler, which
    # must keep the resume position; 4 steps per epoch, so step 7 is inside the second epoch
    last, step7 = _straight_run(tmp_path / "straight", "trainer=ddp_cpu")
    run_cli("derain-train", *BASE, "trainer=ddp_cpu", f"ckpt_path={step7}", cwd=tmp_path)
    (resumed,) = run_dirs(tmp_path)
    _assert_same_training_state(_load(last), _load(resumed / "checkpoints" / "last.ckpt"))


def _saved_step(path) -> int | None:
    try:
        return _load(path)["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def test_sigterm_saves_exits_cleanly_and_resumes_to_the_same_end(straight, tmp_path):
    args = [*BASE, "callbacks.last_checkpoint.every_n_train_steps=2"]
    proc = subprocess.Popen(
        [str(BIN / "derain-train"), *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = tmp_path / "logs" / "train" / "runs"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            lasts = list(runs.glob("*/checkpoints/last.ckpt"))
            if lasts and (_saved_step(lasts[0]) or 0) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before the signal"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    (stopped,) = run_dirs(tmp_path)
    saved = _saved_step(stopped / "checkpoints" / "last.ckpt")
    assert 2 <= saved < STEPS
    assert not list((stopped / "checkpoints").glob(".*tmp"))  # no half-written file left

    run_cli("derain-train", *args, "ckpt_path=last", cwd=tmp_path)
    _, resumed = run_dirs(tmp_path)
    assert (
        _saved_step(stopped / "checkpoints" / "last.ckpt") == saved
    )  # the stopped run's file stays
    last, _ = straight
    _assert_same_training_state(_load(last), _load(resumed / "checkpoints" / "last.ckpt"))


def test_checkpoints_by_training_time_are_written_during_the_epoch(tmp_path):
    run_cli(
        "derain-train",
        *TINY,
        "data.limit=64",  # 32 steps per epoch: the run ends long before the epoch
        "callbacks.timed_checkpoint.train_time_interval.minutes=0",
        "callbacks.timed_checkpoint.filename=timed",
        # the clock is read every 2 steps: at step 2, not at the last step (3)
        "callbacks.timed_checkpoint.check_every_n_steps=2",
        "test=false",
        cwd=tmp_path,
    )
    (run,) = run_dirs(tmp_path)
    assert _saved_step(run / "checkpoints" / "timed.ckpt") == 2


def test_resume_continues_the_time_following_cosine_where_its_clock_stopped(tmp_path):
    """The cosine's progress is the share of trainer.max_time used, the resumed run's earlier
    time included: a checkpoint that had used half of 10 minutes resumes at half the decay."""
    args = [
        *[a for a in TINY if not a.startswith("trainer.max_steps")],
        "test=false",
        "scheduler=cosine",
        "scheduler.follow_max_time=true",
        "scheduler.warmup_steps=0",
        "scheduler.total_steps=1000000",  # only the clock moves the decay
        "trainer.max_time=00:00:10:00",
        "trainer.log_every_n_steps=1",
    ]
    run_cli("derain-train", *args, "trainer.max_steps=2", cwd=tmp_path)
    (first,) = run_dirs(tmp_path)
    checkpoint = _load(first / "checkpoints" / "last.ckpt")
    checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"] = 300.0
    torch.save(checkpoint, tmp_path / "halfway.ckpt")
    run_cli(
        "derain-train",
        *args,
        "trainer.max_steps=4",
        f"ckpt_path={tmp_path / 'halfway.ckpt'}",
        cwd=tmp_path,
    )
    _, resumed = run_dirs(tmp_path)
    with (resumed / "csv" / "metrics.csv").open() as f:
        rates = [float(r["lr-Adam"]) for r in csv.DictReader(f) if r.get("lr-Adam")]
    peak = checkpoint["optimizer_states"][0]["param_groups"][0]["initial_lr"]
    halfway = 0.01 + 0.99 * 0.5  # min_lr_ratio + (1 - min_lr_ratio) · (1 + cos(π/2)) / 2
    # the first resumed step runs at the rate set before the checkpoint, as it would have
    # without the stop; the scheduler's next step reads the restored clock
    assert rates[0] / peak > 0.99
    assert len(rates) > 1 and all(abs(rate / peak - halfway) < 0.01 for rate in rates[1:])

"""The training loop waits for nothing between logging intervals, with the shipped configs
(progress bar included): no host read of a tensor (on a GPU, a wait for the device) and no
collective (under DDP, a wait for every process). Counted by `sync_counting.SyncCounter`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from derain.training import tasks
from helpers import TINY, run_cli
from sync_counting import waits_outside

LOG_EVERY = 4
STEPS = 12


def test_training_steps_wait_for_nothing_outside_the_logging_interval(compose_config, tmp_path):
    overrides = [o for o in TINY if not o.startswith(("data.limit", "trainer.max_steps"))]
    overrides.remove("callbacks.progress_bar=null")  # the shipped progress bar stays
    cfg = compose_config(
        "train",
        [
            *overrides,
            "data.limit=64",  # 32 steps per epoch: no epoch end among the counted steps
            f"trainer.max_steps={STEPS}",
            f"trainer.log_every_n_steps={LOG_EVERY}",
            "test=false",
            f"paths.output_dir={tmp_path}",
            f"paths.log_dir={tmp_path / 'logs'}",
            "+callbacks.syncs._target_=sync_counting.SyncCounter",
            f"+callbacks.syncs.out={tmp_path / 'syncs'}",
        ],
    )
    tasks.train(cfg)

    report = json.loads((tmp_path / "syncs" / "rank0.json").read_text())
    assert sorted(report["step_after"].values()) == list(range(1, STEPS + 1))
    assert waits_outside(report, LOG_EVERY) == {}
    # the loggers and the progress bar do read the loss, at their interval
    at_interval = [b for b, step in report["step_after"].items() if step % LOG_EVERY == 0]
    assert all(report["waits"].get(b) for b in at_interval)


def test_ddp_training_steps_wait_for_nothing_outside_the_logging_interval(tmp_path):
    """Two processes (gloo): no collective per step (Lightning's per-step SIGTERM broadcast,
    the timed checkpoint's) beyond the logging interval's, on either process."""
    overrides = [o for o in TINY if not o.startswith(("data.limit", "trainer.max_steps"))]
    tests_dir = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")])}
    run_cli(
        "derain-train",
        *overrides,
        "trainer=ddp_cpu",
        "data.limit=64",  # 16 steps per epoch and process
        f"trainer.max_steps={STEPS}",
        f"trainer.log_every_n_steps={LOG_EVERY}",
        "test=false",
        "+callbacks.syncs._target_=sync_counting.SyncCounter",
        f"+callbacks.syncs.out={tmp_path / 'syncs'}",
        cwd=tmp_path,
        env={**env, "OMP_NUM_THREADS": "1"},
    )
    for rank in (0, 1):
        report = json.loads((tmp_path / "syncs" / f"rank{rank}.json").read_text())
        assert sorted(report["step_after"].values()) == list(range(1, STEPS + 1))
        assert waits_outside(report, LOG_EVERY) == {}
        # the processes do agree at the interval (the preemption check, an all-reduce)
        at_interval = [b for b, step in report["step_after"].items() if step % LOG_EVERY == 0]
        assert all(
            any("all_reduce" in wait for wait in report["waits"].get(b, ())) for b in at_interval
        )

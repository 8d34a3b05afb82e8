"""Preemption under DDP (two CPU processes, gloo): a SIGTERM that reaches one process only, as
schedulers may deliver it, stops both after the same step, writes last.ckpt once, exits 0, and
the run resumes from it."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import torch

from helpers import BIN, TINY, run_dirs

CHECK_EVERY = 2  # trainer.log_every_n_steps: the processes agree on signals every 2 steps
DDP = [a for a in TINY if not a.startswith(("data.limit", "trainer.max_steps"))] + [
    "trainer=ddp_cpu",
    "data.limit=16",  # 4 steps per epoch: validation and epoch ends come between the checks
    "test=false",
    f"trainer.log_every_n_steps={CHECK_EVERY}",
    "callbacks.last_checkpoint.every_n_train_steps=2",  # shows when training is under way
]
LONG = "trainer.max_steps=100000"  # ends only by the signal
TIMEOUT_S = 240
STOP = re.compile(r"rank (\d): SIGTERM received, stopping after step (\d+)")


def _env() -> dict[str, str]:
    return {**os.environ, "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}


def _step(path: Path) -> int | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def _start(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_training(cwd: Path, proc: subprocess.Popen) -> Path:
    """The run folder, once its last.ckpt holds step 2 or later."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        for last in (cwd / "logs" / "train" / "runs").glob("*/checkpoints/last.ckpt"):
            if (_step(last) or 0) >= 2:
                return last.parents[1]
        time.sleep(0.1)
    raise AssertionError(f"training did not start (exit {proc.poll()})")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    values = dict(item.split(b"=", 1) for item in environ if b"=" in item)
    rank = values.get(b"RANK", values.get(b"LOCAL_RANK"))
    return None if rank is None else int(rank)


def _stop_steps(run: Path) -> dict[int, int]:
    """rank → the step after which it stopped, from each process's job log."""
    steps = {}
    for log in run.glob("train*.log"):
        for rank, step in STOP.findall(log.read_text()):
            steps[int(rank)] = int(step)
    return steps


def _finish(proc: subprocess.Popen) -> str:
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


def _check_stopped_once(run: Path, proc: subprocess.Popen, out: str) -> int:
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    steps = _stop_steps(run)
    assert set(steps) == {0, 1}, out[-3000:]  # both processes stopped themselves...
    assert steps[0] == steps[1]  # ...after the same step
    assert steps[0] % CHECK_EVERY == 0
    names = [p.name for p in (run / "checkpoints").iterdir()]
    # one last.ckpt: no per-process copy (last-v1.ckpt), no half-written temporary (.last...)
    assert [n for n in names if n.startswith(("last", "."))] == ["last.ckpt"]
    assert _step(run / "checkpoints" / "last.ckpt") == steps[0]
    return steps[0]


def _check_resumes(cwd: Path, launch: list[str], stopped: int) -> None:
    end = stopped + 2
    proc = subprocess.run(
        [*launch, *DDP, "ckpt_path=last", f"trainer.max_steps={end}"],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    _, resumed = run_dirs(cwd)
    assert _step(resumed / "checkpoints" / "last.ckpt") == end
    with (resumed / "csv" / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert steps and min(steps) >= stopped  # it went on from the checkpoint, not from step 0


def test_sigterm_to_rank_1_alone_under_torchrun_stops_both_at_one_step_and_resumes(tmp_path):
    launch = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "--no-python"]
    env = _env()
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    proc = _start([*launch, "derain-train", *DDP, LONG], tmp_path, env)
    try:
        run = _wait_for_training(tmp_path, proc)
        (rank1,) = [pid for pid in _children(proc.pid) if _rank_of(pid) == 1]
        os.kill(rank1, signal.SIGTERM)
    finally:
        out = _finish(proc)
    stopped = _check_stopped_once(run, proc, out)
    _check_resumes(tmp_path, [*launch, str(BIN / "derain-train")], stopped)


def test_sigterm_to_rank_0_alone_under_lightnings_launcher_stops_both_and_resumes(tmp_path):
    launch = [str(BIN / "derain-train")]
    proc = _start([*launch, *DDP, LONG], tmp_path, _env())
    try:
        run = _wait_for_training(tmp_path, proc)
        # Lightning started the second process
        (rank1,) = [pid for pid in _children(proc.pid) if _rank_of(pid) == 1]
        proc.send_signal(signal.SIGTERM)  # the first process only
    finally:
        out = _finish(proc)
    # the second process ends on its own, having saved nothing twice
    deadline = time.monotonic() + TIMEOUT_S
    while Path(f"/proc/{rank1}").exists() and time.monotonic() < deadline:
        if (Path(f"/proc/{rank1}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z":
            break
        time.sleep(0.1)
    stopped = _check_stopped_once(run, proc, out)
    _check_resumes(tmp_path, launch, stopped)


def test_requeue_signal_in_a_plain_slurm_job_saves_requeues_and_the_requeued_job_resumes(
    tmp_path,
):
    """A batch script's single process (sbatch --signal=USR2@N, no submitit): the signal
    saves, `scontrol requeue` is asked for this job, and the requeued run resumes by itself."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/requeued"\n')
    scontrol.chmod(0o755)
    env = {**_env(), "SLURM_JOB_ID": "77", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    args = [a for a in DDP if a != "trainer=ddp_cpu"]
    proc = _start([str(BIN / "derain-train"), *args, "trainer.max_steps=400"], tmp_path, env)
    try:
        run = _wait_for_training(tmp_path, proc)
        proc.send_signal(signal.SIGUSR2)
    finally:
        out = _finish(proc)
    assert proc.returncode == 0, out[-3000:]
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "77"]
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["slurm_job_id"] == "77" and saved["global_step"] < 400

    requeued = subprocess.run(
        [str(BIN / "derain-train"), *args, f"trainer.max_steps={saved['global_step'] + 1}"],
        cwd=tmp_path,
        env={**env, "SLURM_RESTART_COUNT": "1"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "requeued SLURM job: resuming from" in requeued.stdout + requeued.stderr
    _, resumed = run_dirs(tmp_path)
    assert _step(resumed / "checkpoints" / "last.ckpt") == saved["global_step"] + 1

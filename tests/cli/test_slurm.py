"""`derain-train -m hydra/launcher=slurm` (Hydra's submitit launcher) against stand-ins for
SLURM's commands: the job it submits has the trainer's shape, and its time-limit signal ends in
a checkpoint, a requeue and a resumed run."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from cli.slurm_standins import JOB_ID, install
from helpers import BIN, TINY

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs derain[slurm]")

TIMEOUT_S = 300


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "standin-bin"
    install(bin_dir)
    state = tmp_path / "slurm"
    state.mkdir(exist_ok=True)
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1", **extra}
    env["PATH"] = f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SLURM_STANDIN_DIR"] = str(state)
    for name in [
        n for n in env if n.startswith(("SLURM_", "SUBMITIT_")) and n != "SLURM_STANDIN_DIR"
    ]:
        del env[name]
    return env


def _directives(script: str) -> dict[str, str]:
    return dict(re.findall(r"#SBATCH --([\w-]+)=(\S+)", script))


def _submitted_script(tmp_path: Path, *overrides: str) -> dict[str, str]:
    """The #SBATCH settings of the job derain-train submits (the stand-in sbatch refuses it)."""
    env = _env(tmp_path)
    (tmp_path / "standin-bin" / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" "{tmp_path}/slurm/submitted.sh"\necho "sbatch: refused" >&2\nexit 1\n'
    )
    proc = subprocess.run(
        [str(BIN / "derain-train"), "-m", "hydra/launcher=slurm", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert "sbatch: refused" in proc.stderr, proc.stderr[-3000:]
    return _directives((tmp_path / "slurm" / "submitted.sh").read_text())


def test_two_node_gpu_job_asks_for_the_trainers_nodes_tasks_and_gpus(tmp_path):
    job = _submitted_script(tmp_path, "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    assert job["nodes"] == "2"
    assert job["ntasks-per-node"] == job["gpus-per-node"] == "4"
    # the time-limit warning is the signal derain's preemption callback handles
    assert job["signal"] == "USR2@300"


def test_cpu_job_asks_for_no_gpus(tmp_path):
    job = _submitted_script(tmp_path, "trainer=ddp_cpu", "trainer.num_nodes=2", "trainer.devices=1")
    assert (job["nodes"], job["ntasks-per-node"]) == ("2", "1")
    assert "gpus-per-node" not in job


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step(path: Path) -> int | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


@pytest.mark.slow  # two runs of two processes each, and submitit's polling: about 80 s
def test_time_limit_signal_saves_requeues_and_the_requeued_job_resumes(tmp_path):
    steps = 24
    env = _env(tmp_path, MASTER_PORT=str(_free_port()))
    state = tmp_path / "slurm"
    overrides = [a for a in TINY if not a.startswith(("data.limit", "trainer.max_steps"))]
    proc = subprocess.Popen(
        [
            str(BIN / "derain-train"),
            "-m",
            "hydra/launcher=slurm",
            "trainer=ddp_cpu",  # two one-process "nodes" of the stand-in srun, on this machine
            "trainer.devices=1",
            "trainer.num_nodes=2",
            *overrides,
            "data.limit=16",
            f"trainer.max_steps={steps}",
            "trainer.log_every_n_steps=2",
            "callbacks.last_checkpoint.every_n_train_steps=2",
            "test=false",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        last = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list((tmp_path / "logs").glob("**/checkpoints/last.ckpt"))
            if found and (_step(found[0]) or 0) >= 2:
                last = found[0]
                break
            time.sleep(0.1)
        assert last is not None, f"training did not start (exit {proc.poll()})"
        # SLURM's warning before the time limit, here reaching the second task alone
        os.kill(int((state / "tasks" / "0_1.pid").read_text()), signal.SIGUSR2)
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logs = {
        rank: (tmp_path / "logs").glob(f"**/.submitit/{JOB_ID}/{JOB_ID}_{rank}_log.out")
        for rank in (0, 1)
    }
    logs = {rank: next(paths).read_text() for rank, paths in logs.items()}
    assert proc.returncode == 0, out[-2000:] + logs[0][-3000:]
    stops = {
        rank: re.findall(r"rank \d: SIGUSR2 received, stopping after step (\d+)", text)
        for rank, text in logs.items()
    }
    assert stops[0] == stops[1] and len(stops[0]) == 1  # one stop, the same step on both
    stopped = int(stops[0][0])
    assert 2 <= stopped < steps
    # submitit requeued the job (once), and the requeued job resumed from the checkpoint
    assert (state / "requeued").read_text().split() == [JOB_ID]
    assert f"requeued SLURM job: resuming from {last.relative_to(tmp_path)}" in logs[0]
    assert _step(last) == steps

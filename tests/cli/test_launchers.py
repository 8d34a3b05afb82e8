"""External launchers: `torchrun` and SLURM's `srun` start every process themselves (CPU, gloo).

Each process composes the config on its own, so these check that all of them agree on one run
folder and one logger run, and that the run ends cleanly (exit 0) with each file written once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

import torch

from helpers import BIN, TINY, run_dirs

# two processes × 2 patches, 8 training images: 2 steps per epoch, so max_steps=3 stops in the
# middle of an epoch and the end-of-fit checkpoint decision (a collective) is taken
LAUNCHED = [a for a in TINY if not a.startswith(("data.limit", "trainer.max_steps"))] + [
    "data.limit=8",
    "trainer.max_steps=3",
    "trainer=ddp_cpu",
]
TIMEOUT_S = 240  # a hang (one process in a collective the other skipped) fails instead of blocking


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1", **extra}


def _check_one_run(cwd, procs) -> object:
    for proc in procs:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}"
    (run,) = run_dirs(cwd)  # one folder for every process
    # the config once; each process its own job log, none truncated by another
    assert sorted(p.name for p in (run / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    ]
    assert "train_ddp_process_1.log" in {p.name for p in run.iterdir()}
    # one logger run: a single CSV folder, no per-process versions
    assert sorted(p.name for p in (run / "csv").iterdir() if p.is_file()) == [
        "hparams.yaml",
        "metrics.csv",
    ]
    assert not list(cwd.glob("**/version_*"))
    # checkpoints written once, last.ckpt at the final step (saved after a mid-epoch stop)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in names and not [n for n in names if "-v" in n]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3
    # the test ran once on one process over the whole sets (a distributed sampler would split
    # them); throughput counts both processes
    results = json.loads((run / "results.json").read_text())
    assert results["sets"]["synthetic_light"]["images"] == 8
    assert json.loads((run / "throughput.json").read_text())["world_size"] == 2
    return run


def test_torchrun_two_processes_write_one_run_folder_and_one_logger_run(tmp_path):
    env = _env(WANDB_MODE="offline", WANDB_DIR=str(tmp_path), WANDB_SILENT="true")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # derain-train by name, as typed
    proc = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--standalone",  # the README's command: a free port, so tests can run side by side
            "--nproc_per_node=2",
            "--no-python",
            "derain-train",
            *LAUNCHED,
            "logger=many",
            "logger.wandb.offline=true",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    proc.stdout += proc.stderr
    run = _check_one_run(tmp_path, [proc])
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    # TensorBoard: every event file from one process (fit and test each open one)
    events = list((run / "tensorboard").glob("**/events.out.tfevents.*"))
    assert events and len({p.name.split(".")[-2] for p in events}) == 1


def test_srun_two_tasks_write_one_run_folder_named_by_the_job(tmp_path):
    # what srun --ntasks-per-node=2 sets for its two tasks
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_ID": "0",
        "SLURM_JOB_NAME": "derain",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    tasks = [
        subprocess.Popen(
            [str(BIN / "derain-train"), *LAUNCHED],
            cwd=tmp_path,
            env=_env(**slurm, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    procs = []
    try:
        for task in tasks:
            stdout, _ = task.communicate(timeout=TIMEOUT_S)
            procs.append(subprocess.CompletedProcess(task.args, task.returncode, stdout))
    finally:
        for task in tasks:
            if task.poll() is None:
                task.kill()
                task.wait()
    run = _check_one_run(tmp_path, procs)
    assert run.name == "slurm4242.0"

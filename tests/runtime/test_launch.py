"""derain.runtime.launch: one run name for every process of a torchrun or srun launch."""

from __future__ import annotations

import datetime

import pytest
from torch.distributed import TCPStore

from derain.runtime import launch

FORMAT = "%Y-%m-%d_%H-%M-%S_%f"
LAUNCHER_VARIABLES = (
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_USE_AGENT_STORE",
    "WORLD_SIZE",
    "RANK",
    "SLURM_NTASKS",
    "SLURM_STEP_ID",
    "SLURM_JOB_NAME",
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _is_a_time(name: str) -> bool:
    return bool(datetime.datetime.strptime(name, FORMAT))


def test_without_a_launcher_the_run_is_named_by_its_start_time(clean_env):
    assert _is_a_time(launch.run_name(FORMAT))
    assert launch.rank_suffix() == "" and launch.rank_zero_only(".hydra") == ".hydra"


def test_torchrun_processes_take_rank_zeros_name_from_the_launchers_store(clean_env):
    server = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    env = {
        "TORCHELASTIC_RUN_ID": "none",  # torchrun's default: no id to name the run by
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "TORCHELASTIC_RESTART_COUNT": "0",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(server.port),
    }
    for name, value in env.items():
        clean_env.setenv(name, value)
    clean_env.setenv("RANK", "0")
    first = launch.run_name(FORMAT)
    clean_env.setenv("RANK", "1")
    assert launch.run_name(FORMAT) == first
    assert launch.rank_suffix() == "_ddp_process_1" and launch.rank_zero_only(".hydra") is None
    # an elastic restart starts a new folder
    clean_env.setenv("RANK", "0")
    clean_env.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert launch.run_name(FORMAT) != first


def test_torchrun_without_a_shared_store_asks_for_a_name(clean_env):
    for name, value in {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2", "RANK": "1"}.items():
        clean_env.setenv(name, value)
    clean_env.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")
    with pytest.raises(RuntimeError, match="run_name=NAME"):
        launch.run_name(FORMAT)
    clean_env.setenv("TORCHELASTIC_RUN_ID", "job7")
    assert launch.run_name(FORMAT) == "torchrun-job7"


@pytest.mark.parametrize(
    ("extra", "named_by_job"),
    [
        ({}, True),
        ({"SLURM_JOB_NAME": "interactive"}, False),  # another launcher starts the processes
        ({"SLURM_STEP_ID": None}, False),  # the batch script itself: one process
        ({"SLURM_NTASKS": "1"}, False),
    ],
)
def test_srun_tasks_are_named_by_job_and_step(clean_env, extra, named_by_job):
    env = {"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "3", "SLURM_NTASKS": "2", "SLURM_PROCID": "1"}
    for name, value in {**env, **extra}.items():
        if value is None:
            clean_env.delenv(name, raising=False)
        else:
            clean_env.setenv(name, value)
    name = launch.run_name(FORMAT)
    if named_by_job:
        assert name == "slurm77.3" and launch.rank_suffix() == "_ddp_process_1"
    else:
        assert _is_a_time(name) and launch.rank_suffix() == ""


def test_slurm_job_shape_follows_the_trainer():
    assert launch.slurm_tasks_per_node(4) == 4
    assert launch.slurm_gpus_per_node("gpu", 4) == 4
    assert launch.slurm_gpus_per_node("cpu", 2) is None


@pytest.mark.parametrize("devices", ["auto", [0, 1], 0, True])
def test_slurm_job_shape_needs_a_device_count(devices):
    with pytest.raises(ValueError, match=r"trainer.devices=N"):
        launch.slurm_tasks_per_node(devices)

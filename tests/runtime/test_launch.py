"""derain.runtime.launch: one run name for every process of a torchrun or srun launch."""

from __future__ import annotations

import datetime

import pytest
import torch.distributed
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from torch.distributed import TCPStore

from derain.paths import config_dir
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


def _run_config() -> DictConfig:
    return OmegaConf.create({"run_name": f"${{derain.run_name:{FORMAT}}}"})


def _agreed_name() -> str:
    config = _run_config()
    launch.agree_on_run_name(config)
    return config.run_name


TORCHRUN = {
    "TORCHELASTIC_RUN_ID": "none",  # torchrun's default: no id to name the run by
    "TORCHELASTIC_USE_AGENT_STORE": "True",
    "TORCHELASTIC_RESTART_COUNT": "0",
    "WORLD_SIZE": "2",
    "MASTER_ADDR": "127.0.0.1",
}


@pytest.fixture
def torchrun_env(clean_env):
    for name, value in TORCHRUN.items():
        clean_env.setenv(name, value)
    clean_env.setattr(launch, "_agreed_run_name", None)
    return clean_env


def test_torchrun_processes_take_rank_zeros_name_from_the_launchers_store(torchrun_env):
    server = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    torchrun_env.setenv("MASTER_PORT", str(server.port))
    torchrun_env.setenv("RANK", "0")
    first = _agreed_name()
    assert _is_a_time(first)
    torchrun_env.setenv("RANK", "1")
    assert _agreed_name() == first  # its own start time came later
    assert launch.rank_suffix() == "_ddp_process_1" and launch.rank_zero_only(".hydra") is None
    # an elastic restart starts a new folder
    torchrun_env.setenv("RANK", "0")
    torchrun_env.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert _agreed_name() != first
    # a name given on the command line stays, and needs no store
    given = OmegaConf.create({"run_name": "mine"})
    launch.agree_on_run_name(given)
    assert given.run_name == "mine"


def test_composing_and_resolving_the_ddp_config_opens_no_connection(torchrun_env):
    """The run name is agreed when the run starts (`SharedRunName`), not while Hydra composes."""

    def no_store(*args, **kwargs):
        raise AssertionError("a TCPStore was opened")

    torchrun_env.setattr(torch.distributed, "TCPStore", no_store)
    torchrun_env.setenv("MASTER_PORT", "1")  # nothing listens there
    torchrun_env.setenv("RANK", "1")
    with initialize_config_dir(version_base=None, config_dir=str(config_dir())):
        cfg = compose("train", ["trainer=ddp", "logger=many"], return_hydra_config=True)
    assert _is_a_time(cfg.run_name)
    assert cfg.hydra.run.dir.endswith(cfg.run_name)
    assert cfg.hydra.sweep.dir.endswith(cfg.run_name)
    assert cfg.logger.wandb.name.endswith(cfg.run_name)
    assert cfg.hydra.callbacks.shared_run_name._target_ == "derain.runtime.launch.SharedRunName"


def test_torchrun_without_a_shared_store_asks_for_a_name(clean_env):
    for name, value in {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2", "RANK": "1"}.items():
        clean_env.setenv(name, value)
    clean_env.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")
    clean_env.setattr(launch, "_agreed_run_name", None)
    with pytest.raises(RuntimeError, match="run_name=NAME"):
        _agreed_name()
    clean_env.setenv("TORCHELASTIC_RUN_ID", "job7")
    assert _agreed_name() == "torchrun-job7"


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

"""What the process launcher (torchrun, SLURM's srun, or none) says about this process.

Under `torchrun` and `srun` every process runs the command line itself, so each composes its own
config. Everything that names the run (its folder, its logger run) must therefore come out the
same in every process: `run_name` takes it from the launcher instead of from each process's clock.
Lightning's own DDP launcher (`trainer.devices=N` without an external launcher) needs none of
this: it passes the first process's run folder to the processes it starts.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

_SHARED_NAME_TIMEOUT = datetime.timedelta(minutes=5)
"""How long a process waits for rank 0 to publish the run name (ranks start seconds apart)."""


def torchrun_rank(env: Mapping[str, str] | None = None) -> int | None:
    """Global rank under a torchrun launch of several processes, else None."""
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" not in env or int(env.get("WORLD_SIZE", "1")) < 2:
        return None
    return int(env["RANK"])


def slurm_rank(env: Mapping[str, str] | None = None) -> int | None:
    """Global rank under an `srun` step of several tasks (as Lightning reads it), else None.

    Jobs named `bash` or `interactive` are allocations in which another launcher starts the
    processes; Lightning then ignores SLURM, and so does this. A batch script's own step (no
    SLURM_STEP_ID) is one process, whatever --ntasks says.
    """
    env = os.environ if env is None else env
    if (
        int(env.get("SLURM_NTASKS", "1")) < 2
        or "SLURM_STEP_ID" not in env
        or env.get("SLURM_JOB_NAME") in ("bash", "interactive")
    ):
        return None
    return int(env["SLURM_PROCID"])


def launcher_rank(env: Mapping[str, str] | None = None) -> int | None:
    """This process's global rank when an external launcher started several, else None."""
    rank = torchrun_rank(env)
    return rank if rank is not None else slurm_rank(env)


_agreed_run_name: str | None = None
"""The run name every process of this torchrun launch agreed on (`SharedRunName`), once agreed."""


def run_name(time_format: str) -> str:
    """The run's name (the `${derain.run_name:FORMAT}` resolver); reads nothing from the network.

    - torchrun (several processes): the name `SharedRunName` agreed on when the run started,
      rank 0's start time.
    - srun (several tasks): `slurm<job id>.<step id>`; each srun of a batch script is a new step.
    - otherwise (and under torchrun before the run starts): this process's start time,
      `time_format` as for `datetime.strftime`.
    """
    if torchrun_rank() is not None and _agreed_run_name is not None:
        return _agreed_run_name
    if slurm_rank() is not None:
        return f"slurm{os.environ['SLURM_JOB_ID']}.{os.environ['SLURM_STEP_ID']}"
    return datetime.datetime.now().strftime(time_format)


def agree_on_run_name(config: Any) -> None:
    """Under torchrun, makes every process's `run_name` rank 0's (its start time, composed with
    this process's `config`), shared through the launcher's key-value store (the TCPStore
    torchrun's agent serves at MASTER_ADDR:MASTER_PORT); an elastic restart gets a new name, so
    it never writes into the failed attempt's folder. A `run_name` given as a value is kept.
    Elsewhere it does nothing."""
    global _agreed_run_name
    if torchrun_rank() is None:
        return
    _agreed_run_name = None
    if "run_name" not in config or not OmegaConf.is_interpolation(config, "run_name"):
        return
    OmegaConf.clear_cache(config)
    proposal = config.run_name  # this process's start time
    _agreed_run_name = _shared_by_rank_zero(proposal)
    OmegaConf.clear_cache(config)  # the resolver's cached time gives way to the agreed name


def _shared_by_rank_zero(proposal: str) -> str:
    env = os.environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        run_id = env.get("TORCHELASTIC_RUN_ID", "none")
        if run_id != "none":
            return f"torchrun-{run_id}"
        raise RuntimeError(
            "torchrun started several processes without a key-value store to agree on the run "
            "folder (TORCHELASTIC_USE_AGENT_STORE is not True): pass the same run_name=NAME to "
            "every process, or give torchrun --rdzv-id=NAME"
        )
    from torch.distributed import TCPStore

    store = TCPStore(
        env["MASTER_ADDR"],
        int(env["MASTER_PORT"]),
        is_master=False,
        timeout=_SHARED_NAME_TIMEOUT,
        wait_for_workers=False,
    )
    key = f"derain/run_name/attempt{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if int(env["RANK"]) == 0:
        # the first name set for this attempt stays, should rank 0 compose the config again
        store.compare_set(key, "", proposal)
    return store.get(key).decode()


class SharedRunName(Callback):
    """A Hydra callback (conf/hydra/default.yaml): `agree_on_run_name` when a run or a sweep
    starts, after Hydra composed the config and before it names the run's folder."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        agree_on_run_name(config)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        agree_on_run_name(config)


def rank_suffix() -> str:
    """`_ddp_process_<rank>` for the processes a launcher started after the first, else "".

    Appended to the job log's name, as Lightning's own launcher names its processes' logs, so
    that no process truncates another's log in the shared run folder.
    """
    rank = launcher_rank()
    return f"_ddp_process_{rank}" if rank else ""


def rank_zero_only(value: str) -> str | None:
    """`value` in the first process of a launch (or without a launcher), None in the others:
    Hydra writes the run's `.hydra/` config folder once."""
    return None if launcher_rank() else value


def slurm_tasks_per_node(devices: object) -> int:
    """SLURM tasks per node for `trainer.devices`: Lightning expects one task per device.

    The launcher config (conf/hydra/launcher/slurm.yaml) asks for this many tasks on each node.
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(
            f"hydra/launcher=slurm needs trainer.devices as a number of devices per node, got "
            f"{devices!r}: set trainer.devices=N (or hydra.launcher.tasks_per_node and "
            "hydra.launcher.gpus_per_node yourself)"
        )
    return devices


def slurm_gpus_per_node(accelerator: str, devices: object) -> int | None:
    """GPUs to ask SLURM for on each node: `trainer.devices` on a GPU trainer, none on CPU."""
    tasks = slurm_tasks_per_node(devices)
    return None if str(accelerator) == "cpu" else tasks

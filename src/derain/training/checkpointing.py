"""Checkpoints that survive crashes and preemption.

- `AtomicCheckpointIO`: every checkpoint is written to a temporary file beside its target and
  renamed over it, so a crash or a full disk mid-write leaves the previous checkpoint intact.
- `Preemption`: SIGTERM (what SLURM and most schedulers send before preemption) reaching any
  process stops every process after the same step and saves last.ckpt once; the run exits
  cleanly (status 0) and resumes with `ckpt_path=last`. The requeue signal (USR2, submitit's
  time-limit warning) also requeues the SLURM job, which then resumes by itself.
- `TimedCheckpoint`: a checkpoint every N minutes of training, the clock read at fixed steps.
- `RandomStates`: Python, NumPy and torch random states travel in checkpoints, so a resumed run
  draws what an uninterrupted one would.
- `newest_checkpoint`: what `ckpt_path=last` resumes, and what a requeued SLURM job resumes
  without being told (`slurm_requeued`).
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

SLURM_JOB_KEY = "slurm_job_id"
"""Checkpoint entry holding the SLURM job that wrote it (absent outside SLURM)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's `TorchCheckpointIO`, writing through a temporary file and a rename.

    The rename replaces the old file in one step (POSIX `rename`), so at any moment the
    checkpoint path holds either the previous complete checkpoint or the new complete one.
    The data is flushed to disk before the rename, so a power cut cannot leave a renamed but
    empty file.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__} does not take storage_options, got {storage_options}"
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        # os.open applies the umask, as a plain write would (mkstemp would make it private)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class Preemption(Callback):
    """Ends training cleanly when a termination signal reaches any of its processes.

    Schedulers do not signal every process of a job at the same moment, and a signal handler
    that takes part in collectives (Lightning's own SIGTERM handler broadcasts) puts the
    processes' collectives out of step. Here the handler only notes the signal. The
    processes then agree, at fixed steps, whether any of them was signalled: at every step in
    one process (a host-side read), every `check_every_n_steps` optimizer steps under several
    (one all-reduce of a few numbers). When one was, every process stops after that same step
    (Lightning's `SIGTERMException`, a `SystemExit` with status 0), `dirpath/filename` is saved
    once, and `ckpt_path=last` (or a requeued SLURM job, see `newest_checkpoint`) resumes right
    after that step. A signal that arrives during validation takes effect at the first
    training step after it.

    Signals: SIGTERM (preemption, `scancel`) and `requeue_signal`, which also requeues the
    job once the checkpoint is written: the handler that was installed before training takes
    over (submitit's, under Hydra's submitit launcher: it requeues the job, up to its
    `max_num_timeout`), else `scontrol requeue $SLURM_JOB_ID` from the first process in a
    SLURM job.

    Args:
        dirpath: the checkpoint folder (the run's checkpoints/).
        filename: the file written there (last.ckpt, which `ckpt_path=last` picks).
        check_every_n_steps: under several processes, optimizer steps between two agreements
            (the longest a signalled job trains on, in steps).
        requeue_signal: name of the signal that asks for a checkpoint and a requeue ("USR2":
            what submitit's jobs get before their time limit); None: SIGTERM only.
    """

    def __init__(
        self,
        dirpath: str | os.PathLike,
        filename: str = "last.ckpt",
        check_every_n_steps: int = 10,
        requeue_signal: str | None = "USR2",
    ) -> None:
        if check_every_n_steps < 1:
            raise ValueError(
                f"callbacks.preemption.check_every_n_steps must be at least 1, got "
                f"{check_every_n_steps}"
            )
        self.path = Path(dirpath) / filename
        self.check_every_n_steps = check_every_n_steps
        self.requeue_signal = _signal_number(requeue_signal) if requeue_signal else None
        self.signals = [signal.SIGTERM]
        if self.requeue_signal is not None and self.requeue_signal != signal.SIGTERM:
            self.signals.append(self.requeue_signal)
        self.received: set[int] = set()  # signals this process got (set by the handler only)
        self.agreed: set[int] = set()  # signals any process got, once the processes agreed
        self._previous: dict[int, Any] = {}
        self._checked_step: int | None = None

    # ----------------------------------------------------------------------------- handlers
    def _note(self, signum: int, frame: Any) -> None:
        self.received.add(signum)  # nothing else: the process may be inside a collective

    def _install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                signal.signal(signum, self._note)

    def _restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous.items():
                if handler is not None:
                    signal.signal(signum, handler)
        self._previous = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.received, self.agreed, self._checked_step = set(), set(), None
        self._previous = {signum: signal.getsignal(signum) for signum in self.signals}
        self._install()

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install()  # see on_train_start; the sanity check runs before it

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning installs its own SIGTERM handler after set-up (it broadcasts from inside
        # the handler): this one replaces it for the training loop
        self._install()
        # Lightning also broadcasts rank 0's SIGTERM flag at every step (a collective and a
        # host read each time). Its flag is now only set by on_train_batch_end, on every
        # process at the same step, so that broadcast can only ever agree: skip it
        epoch_loop = trainer.fit_loop.epoch_loop
        if hasattr(epoch_loop, "_broadcast_sigterm_tensor"):
            epoch_loop._broadcast_sigterm_tensor = lambda: None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._restore()

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # a requeued SLURM job keeps its id: it finds its own checkpoints by it
        if "SLURM_JOB_ID" in os.environ:
            checkpoint[SLURM_JOB_KEY] = os.environ["SLURM_JOB_ID"]

    # ----------------------------------------------------------------------------- decision
    def _agree(self, trainer: pl.Trainer) -> set[int]:
        """The signals any process received (a collective under several processes)."""
        flags = [float(signum in self.received) for signum in self.signals]
        if trainer.world_size > 1:
            local = torch.tensor(flags, device=trainer.strategy.root_device)  # NCCL: on GPU
            flags = trainer.strategy.reduce(local, reduce_op="max").tolist()
        return {signum for signum, flag in zip(self.signals, flags, strict=True) if flag}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        several = trainer.world_size > 1
        # every process reaches the same steps: the collective below stays in step
        if step == self._checked_step or (several and step % self.check_every_n_steps):
            return
        self._checked_step = step
        if not several and not self.received:
            return
        self.agreed = self._agree(trainer)
        if self.agreed:
            names = ", ".join(signal.Signals(s).name for s in sorted(self.agreed))
            log.warning(
                "rank %d: %s received, stopping after step %d", trainer.global_rank, names, step
            )
            # Lightning raises its SIGTERMException once this step is complete (progress,
            # schedulers), the point from which a resume continues exactly
            trainer._signal_connector.received_sigterm = True

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # a resumable checkpoint
        if trainer.is_global_zero:
            log.warning(
                "saved step %d to %s; resume with ckpt_path=last (or ckpt_path=%s)",
                trainer.global_step,
                self.path,
                self.path,
            )
        previous = dict(self._previous)
        self._restore()
        if self.requeue_signal in self.agreed:
            self._requeue(trainer, previous.get(self.requeue_signal))

    def _requeue(self, trainer: pl.Trainer, handler: Any) -> None:
        if callable(handler):  # submitit's: requeues from its first process, then exits
            handler(self.requeue_signal, None)
            return
        if not trainer.is_global_zero:
            return
        job = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = (
            f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ.get("SLURM_JOB_ID")
        )
        if job is None:
            log.warning("not in a SLURM job: nothing to requeue; resume with ckpt_path=last")
            return
        status = subprocess.call(["scontrol", "requeue", job])
        if status:
            log.warning("scontrol requeue %s failed (status %d)", job, status)
        else:
            log.warning("requeued SLURM job %s: it resumes from %s", job, self.path)


def _signal_number(name: str | int) -> int:
    if isinstance(name, int):
        return name
    full = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    number = getattr(signal, full, None)
    if not isinstance(number, signal.Signals):
        raise ValueError(
            f"callbacks.preemption.requeue_signal={name!r} is not a signal name: use e.g. USR2, "
            "USR1 or null"
        )
    return int(number)


class TimedCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint` with `train_time_interval`, looking at the clock every
    `check_every_n_steps` optimizer steps instead of every step.

    Under several processes Lightning broadcasts its time decision (a pickled Python object,
    a host-device sync on GPU) at every check; the interval keeps that off most steps. The
    checkpoint is written at most `check_every_n_steps` steps later than the time says.
    """

    def __init__(self, *args: Any, check_every_n_steps: int = 10, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be at least 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.check_every_n_steps == 0:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class RandomStates(Callback):
    """Puts this process's Python, NumPy and torch (CPU and CUDA) random states in checkpoints
    and restores them on resume."""

    def state_dict(self) -> dict[str, Any]:
        # the global NumPy state is what third-party code draws from
        name, keys, position, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
        state = {
            "python": random.getstate(),
            # plain lists: checkpoints must load with torch.load(weights_only=True)
            "numpy": [name, keys.tolist(), position, has_gauss, gauss],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["torch.cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        random.setstate(state_dict["python"])
        name, keys, position, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state(  # noqa: NPY002
            (name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss)
        )
        torch.set_rng_state(state_dict["torch"])
        if "torch.cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["torch.cuda"])


def newest_checkpoint(runs: Path, slurm_job_id: str | None = None) -> Path | None:
    """The most recently written checkpoints/last.ckpt or hpc_ckpt_N.ckpt (Lightning's SLURM
    save) under the run folders `runs`, optionally only those written by SLURM job
    `slurm_job_id`; None when there is none."""
    candidates = [*runs.glob("**/checkpoints/last.ckpt"), *runs.glob("**/hpc_ckpt_*.ckpt")]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        if slurm_job_id is None or _job_of(path) == slurm_job_id:
            return path
    return None


def slurm_requeued() -> bool:
    """True in a SLURM job that has been requeued (preempted or timed out, then restarted)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def _job_of(path: Path) -> str | None:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, EOFError):  # unreadable: not one to resume from
        return None
    return checkpoint.get(SLURM_JOB_KEY)

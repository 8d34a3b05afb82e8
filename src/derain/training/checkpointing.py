"""Checkpoints that survive crashes and preemption.

- `AtomicCheckpointIO`: every checkpoint is written to a temporary file beside its target and
  renamed over it, so a crash or a full disk mid-write leaves the previous checkpoint intact.
- `CheckpointOnSigterm`: SIGTERM (what SLURM and most schedulers send before preemption) saves
  last.ckpt at the end of the current step; the run then exits cleanly (status 0) and resumes
  with `ckpt_path=last`.
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
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
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


class CheckpointOnSigterm(Callback):
    """Saves a checkpoint when the run stops on SIGTERM.

    Lightning turns SIGTERM into a `SIGTERMException` at the end of the step in progress (all
    processes together); this writes `dirpath/filename` at that point, so the step is kept and
    `ckpt_path=last` resumes right after it. The exception, a `SystemExit`, then ends the
    process with status 0.

    Args:
        dirpath: the checkpoint folder (the run's checkpoints/).
        filename: the file written there (last.ckpt, which `ckpt_path=last` picks).
    """

    def __init__(self, dirpath: str | os.PathLike, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # a requeued SLURM job keeps its id: it finds its own checkpoints by it
        if "SLURM_JOB_ID" in os.environ:
            checkpoint[SLURM_JOB_KEY] = os.environ["SLURM_JOB_ID"]

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # a resumable checkpoint
        if trainer.is_global_zero:
            log.warning(
                "SIGTERM: saved step %d to %s; resume with ckpt_path=last (or ckpt_path=%s)",
                trainer.global_step,
                self.path,
                self.path,
            )


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

"""The time a SIGTERM (preemption) costs a training run, from the signal to the first step
done after the resume.

Starts `derain-train` with the given overrides, sends it SIGTERM at a random moment of its
training, waits for it to save and exit, then resumes it (`ckpt_path=last`) for one more
step. Prints, per trial: the step saved, seconds from the signal to the exit, and seconds from
the signal to the end of the first resumed step (restart, set-up, checkpoint load, one step)
— the time lost when a requeued job restarts at once. Runs in a scratch folder.

    python -m derain.benchmarks.bench_preemption                       # the demo on one process
    python -m derain.benchmarks.bench_preemption --trials 3 -- experiment=demo trainer=ddp_cpu
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BIN = Path(sys.executable).parent
DEFAULT = ["experiment=demo", "trainer=cpu", "data.batch_size=8", "callbacks.progress_bar=null"]


def _step(path: Path) -> int | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def trial(overrides: list[str], window: tuple[float, float], seed: int) -> dict:
    cwd = Path(tempfile.mkdtemp(prefix="preempt-"))
    args = [*overrides, "test=false"]
    # a step checkpoint tells when training runs (and when the resumed step is done)
    watch = [*args, "callbacks.last_checkpoint.every_n_train_steps=1"]
    proc = subprocess.Popen(
        [str(BIN / "derain-train"), *watch],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = cwd / "logs"
    while proc.poll() is None and not list(runs.glob("**/checkpoints/last.ckpt")):
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(*window))
    signalled = time.time()
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    exited = time.time()
    (stopped,) = runs.glob("**/checkpoints/last.ckpt")
    saved = _step(stopped)
    resumed_proc = subprocess.Popen(
        [str(BIN / "derain-train"), *watch, "ckpt_path=last", f"trainer.max_steps={saved + 1}"],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    resumed = None
    while resumed is None:
        for path in runs.glob("**/checkpoints/last.ckpt"):
            if path != stopped and _step(path) == saved + 1:
                resumed = path.stat().st_mtime
        if resumed is None and resumed_proc.poll() is not None:
            raise RuntimeError(f"the resumed run ended without step {saved + 1} (in {cwd})")
        time.sleep(0.02)
    resumed_proc.wait()
    return {
        "status": proc.returncode,
        "saved_step": saved,
        "signal_to_exit_s": exited - signalled,
        "signal_to_resumed_step_s": resumed - signalled,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument(
        "--window", type=float, nargs=2, default=(5.0, 30.0), metavar=("MIN", "MAX")
    )
    parser.add_argument("overrides", nargs="*", default=DEFAULT)
    args = parser.parse_args(argv)
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    print(
        f"derain-train {' '.join(args.overrides)}: SIGTERM {args.window[0]}-{args.window[1]} s into training"
    )
    for index in range(args.trials):
        result = trial(args.overrides, tuple(args.window), seed=index)
        print(
            f"trial {index}: exit status {result['status']}, step {result['saved_step']} saved; "
            f"signal → exit {result['signal_to_exit_s']:.1f} s, "
            f"signal → first resumed step done {result['signal_to_resumed_step_s']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Memory and speed of `derain-predict` / `Restorer` on CPU (random weights; minutes, not a test).

    python -m derain.benchmarks.bench_predict                      # all three parts, ~15 min on 2 cores
    python -m derain.benchmarks.bench_predict --parts rss          # one part: rss, speed, tiling, allocator
    python -m derain.benchmarks.bench_predict --parts allocator    # the bundled model on a 1920×1080 photo

rss     a 3840×2160 photo through `derain-predict` with the `elf` preset and the default memory
        budget (2 GB): the process's peak resident memory (target ≤ 3 GB) via automatic tiling.
speed   megapixels per second of `elf` and `elf_small` at 512² and 2048² in one run, and the
        ratio of seconds per megapixel between the sizes (linear time: within 20% of 1).
allocator  `derain-predict` with its default model and settings on a photo-like image
        (--allocator-size, default 1920×1080; --allocator-preset elf: that preset with random
        weights instead of the bundled model), with `retain_freed_memory=false` and `true`
        (the default): wall and CPU seconds (CPU time is what to compare on a shared machine)
        and each run's own peak resident memory, against max_memory.
tiling  `elf_tiny` (seeded) on a 512² real photo with synthetic rain, whole vs. tiled under a
        30 MB budget: PSNR to the clean image of both, PSNR between them, and the largest
        differences along tile seams vs. inside tiles.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from derain.data.io import read_image_size, write_image
from derain.inference import Restorer, save_safetensors
from derain.inference.restorer import IMAGE_BUFFER_BYTES_PER_PIXEL
from derain.inference.tiling import axis_tiles
from derain.models import ELF

PARTS = ("rss", "speed", "tiling", "allocator")
RSS_SIZE = (2160, 3840)  # height, width
RSS_TARGET_GB = 3.0
SPEED_PRESETS = ("elf", "elf_small")
SPEED_SIDES = (512, 2048)
SMALL_RUNS = 3  # timed runs at the small size (best kept); the large size runs once
LINEARITY_TOLERANCE = 0.20


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """H×W×3 float32 in [0, 1]: smooth colour gradients, edges and fine noise, like a photo."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    image = np.empty((height, width, 3), np.float32)
    image[..., 0] = 0.5 + 0.3 * np.sin(7 * cols + 3 * rows)
    image[..., 1] = 0.3 + 0.4 * rows * (cols > 0.4)
    image[..., 2] = 0.6 - 0.3 * cols * rows
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    return np.clip(image, 0, 1)


def seeded(preset: str, seed: int = 0) -> ELF:
    torch.manual_seed(seed)
    return ELF.from_preset(preset).eval()


def bench_rss(preset: str = "elf") -> None:
    height, width = RSS_SIZE
    print(f"\n== rss: {width}×{height} through derain-predict, {preset}, default max_memory ==")
    model = seeded(preset)
    restorer = Restorer(model, device="cpu")
    plan = restorer.plan(height, width)
    per_pixel = restorer.activation_bytes_per_pixel + IMAGE_BUFFER_BYTES_PER_PIXEL
    print(
        f"plan: {plan.rows}×{plan.cols} tiles of {plan.tile_shape[0]}×{plan.tile_shape[1]} "
        f"(limit {plan.tile}), estimated {plan.estimated_bytes / 1e9:.2f} GB of "
        f"{plan.budget_bytes / 1e9:.2f} GB; one pass would need "
        f"{height * width * per_pixel / 1e9:.2f} GB"
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        save_safetensors(model, root / f"{preset}.safetensors")
        write_image(root / "photos" / "street.png", photo_like(height, width))
        command = [
            str(Path(sys.executable).parent / "derain-predict"),
            f"ckpt_path={preset}.safetensors",
            "input=photos",
            "output=derained",
        ]
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=root, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        # ru_maxrss of waited-for children: the largest peak among them, in KiB on Linux
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
        if proc.returncode != 0:
            raise SystemExit(f"derain-predict failed:\n{proc.stdout}\n{proc.stderr}")
        out_size = read_image_size(root / "derained" / "street.png")
    verdict = "ok" if peak_gb <= RSS_TARGET_GB else "ABOVE TARGET"
    print(f"command: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(command))}")
    print(f"output {out_size[1]}×{out_size[0]}, {seconds:.0f} s wall")
    print(f"peak RSS {peak_gb:.2f} GB (target ≤ {RSS_TARGET_GB:.0f} GB: {verdict})")


def bench_allocator(height: int, width: int, max_memory: str = "2GB", preset: str = "") -> None:
    model = preset or "the bundled model"
    print(
        f"\n== allocator: {width}×{height} through derain-predict, {model}, "
        f"max_memory={max_memory}, freed memory returned to the OS or retained =="
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_image(root / "photos" / "street.png", photo_like(height, width))
        if preset:
            save_safetensors(seeded(preset), root / f"{preset}.safetensors")
        for retain in ("false", "true"):
            command = [
                str(Path(sys.executable).parent / "derain-predict"),
                *([f"ckpt_path={preset}.safetensors"] if preset else []),
                "input=photos",
                f"output=derained-{retain}",
                f"max_memory={max_memory}",
                f"retain_freed_memory={retain}",
            ]
            log = root / f"predict-{retain}.log"
            start = time.perf_counter()
            with log.open("w") as stdout:
                child = subprocess.Popen(command, cwd=root, stdout=stdout, stderr=stdout)
                # wait4: this child's own rusage (RUSAGE_CHILDREN would give the largest so far)
                _, status, usage = os.wait4(child.pid, 0)
                child.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - start
            peak_gb = usage.ru_maxrss * 1024 / 1e9  # KiB on Linux
            cpu = usage.ru_utime + usage.ru_stime
            if child.returncode != 0:
                raise SystemExit(f"derain-predict failed:\n{log.read_text()}")
            print(
                f"derain-predict input=photos output=out max_memory={max_memory} "
                f"retain_freed_memory={retain}: {seconds:.1f} s wall, {cpu:.1f} CPU s "
                f"({usage.ru_stime:.1f} in the kernel, {usage.ru_minflt / 1e6:.2f} M page "
                f"faults), peak RSS {peak_gb:.2f} GB"
            )


def bench_speed() -> None:
    print(f"\n== speed: CPU, {torch.get_num_threads()} threads, default max_memory ==")
    print("wall-clock seconds give MPix/s; CPU seconds of this process check linearity on a")
    print("shared machine, where other processes stretch wall-clock time unevenly")
    print(
        f"{'model':<10} {'size':>6} {'tiles':>6} {'seconds':>8} {'CPU s':>8} {'MPix/s':>8} "
        f"{'s/MPix':>8} {'CPU s/MPix':>10}"
    )
    for preset in SPEED_PRESETS:
        restorer = Restorer(seeded(preset), device="cpu")
        restorer(photo_like(SPEED_SIDES[0], SPEED_SIDES[0]))  # warm-up: kernels, memory probe
        per_mpix = []  # (wall, CPU) seconds per megapixel at each size
        for side in SPEED_SIDES:
            image = photo_like(side, side, seed=side)
            runs = SMALL_RUNS if side == SPEED_SIDES[0] else 1
            wall, cpu = min(_timed(restorer, image) for _ in range(runs))
            mpix = side * side / 1e6
            per_mpix.append((wall / mpix, cpu / mpix))
            print(
                f"{preset:<10} {side:>5}² {restorer.last_plan.tiles:>6} {wall:>8.1f} {cpu:>8.1f} "
                f"{mpix / wall:>8.4f} {wall / mpix:>8.1f} {cpu / mpix:>10.1f}"
            )
        for label, index in (("wall", 0), ("CPU", 1)):
            ratio = per_mpix[1][index] / per_mpix[0][index]
            linear = "linear" if abs(ratio - 1) <= LINEARITY_TOLERANCE else "NOT linear"
            print(
                f"{preset:<10} {label} s/MPix {SPEED_SIDES[1]}² ÷ {SPEED_SIDES[0]}² = {ratio:.3f} "
                f"({linear} within {LINEARITY_TOLERANCE:.0%})"
            )


def bench_tiling(budget: str = "30MB", overlap: int = 32) -> None:
    from skimage import data

    from derain.data.synthetic import SyntheticRain

    print(f"\n== tiling: elf_tiny (seed 0), 512² photo with light rain, max_memory={budget} ==")
    clean = data.astronaut().astype(np.float32) / 255
    rainy = SyntheticRain("light", seed=0)(clean, key=0).rainy
    random_weights = seeded("elf_tiny")
    trained_looking = copy.deepcopy(random_weights)
    with torch.no_grad():  # output convolutions ×0.1: changes of a trained network's size
        trained_looking.rain_net.to_rain.weight.mul_(0.1)
        trained_looking.recovery_net.reconstruct[-1].weight.mul_(0.1)
    print(f"rainy input: PSNR {_psnr(rainy, clean):.2f} dB")
    for name, model in (("random", random_weights), ("trained-looking", trained_looking)):
        whole = Restorer(model, device="cpu")(rainy)
        tiler = Restorer(model, device="cpu", max_memory=budget, overlap=overlap)
        tiled = tiler(rainy)
        plan = tiler.last_plan
        difference = np.abs(tiled - whole).max(axis=2)
        seam_rows = np.zeros(512, dtype=bool)
        for start, size in axis_tiles(512, plan.tile, overlap):
            seam_rows[start : start + overlap] = True
            seam_rows[start + size - overlap : start + size] = True
        seam_rows[:overlap] = seam_rows[-overlap:] = False  # the image border is no seam
        seams = seam_rows[:, None] | seam_rows[None, :]
        print(
            f"{name:<16} {plan.rows}×{plan.cols} tiles of {plan.tile_shape[0]}²: "
            f"PSNR whole {_psnr(whole, clean):.3f} dB, tiled {_psnr(tiled, clean):.3f} dB "
            f"(Δ {_psnr(tiled, clean) - _psnr(whole, clean):+.3f}), "
            f"PSNR(tiled, whole) {_psnr(tiled, whole):.2f} dB; max |tiled − whole| "
            f"on seams {difference[seams].max():.4f}, inside tiles {difference[~seams].max():.4f}"
        )


def _timed(restorer: Restorer, image: np.ndarray) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    restorer(image)
    return time.perf_counter() - wall, time.process_time() - cpu


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / float(np.mean((a.astype(np.float64) - b) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rss-preset", default="elf")
    parser.add_argument("--allocator-size", nargs=2, type=int, default=(1080, 1920))
    parser.add_argument("--allocator-memory", default="2GB")
    parser.add_argument("--allocator-preset", default="", help="random weights (default: bundled)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {load:.1f} at start")
    if "tiling" in args.parts:
        bench_tiling()
    if "speed" in args.parts:
        bench_speed()
    if "allocator" in args.parts:
        bench_allocator(*args.allocator_size, args.allocator_memory, args.allocator_preset)
    if "rss" in args.parts:
        bench_rss(args.rss_preset)  # last: RUSAGE_CHILDREN must see derain-predict alone
    print(f"load average {os.getloadavg()[0]:.1f} at the end (timings assume an idle machine)")


if __name__ == "__main__":
    main()

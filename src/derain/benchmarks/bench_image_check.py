"""What the set-up check of a data set costs: every header read, or every image decoded.

Finds the pairs under a folder (any layout `find_pairs` knows), then times `scan_files` over
all their files: "header" (in this process) and "full" (decoding every image, in 1 process and
in one per core). Each mode runs `--rounds` times; prints the fastest, in seconds and files/s,
then the CPU time of each check in one process (what an idle machine's cores share).

    derain-synth output=/tmp/synth1000 count=1000   # 1,000 pairs: 3,000 PNGs of 256²
    python -m derain.benchmarks.bench_image_check /tmp/synth1000
    python -m derain.benchmarks.bench_image_check /data/Rain13K/train/Rain13K --workers 8
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from derain.data import find_pairs
from derain.data.checks import scan_files
from derain.data.io import decode_image


def timed_scan(files: list[Path], mode: str, workers: int | None, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        _, bad = scan_files(files, mode, workers=workers)
        best = min(best, time.perf_counter() - start)
        if bad:
            raise SystemExit(f"{len(bad)} unreadable files, e.g. {next(iter(bad))}")
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    pairs = find_pairs(args.folder, check_images=False)
    files = list(dict.fromkeys(f for pair in pairs for f in pair.files))
    print(f"{len(pairs)} pairs, {len(files)} files under {args.folder}")
    rows = [("header", "header", None), ("full, 1 process", "full", 1)]
    if args.workers > 1:
        rows.append((f"full, {args.workers} processes", "full", args.workers))
    for label, mode, workers in rows:
        seconds = timed_scan(files, mode, workers, args.rounds)
        print(f"{label:>22}: {seconds:7.2f} s  ({len(files) / seconds:8.0f} files/s)")
    # CPU time of one process does not depend on how busy the machine is: divided by the
    # cores, it is what the full check takes on an idle machine
    start = time.process_time()
    scan_files(files, "header")
    header_cpu = time.process_time() - start
    start = time.process_time()
    for path in files:
        decode_image(path)
    full_cpu = time.process_time() - start
    print(
        f"CPU time: header {header_cpu:.2f} s, full {full_cpu:.2f} s ({full_cpu / len(files) * 1000:.1f} ms a file)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

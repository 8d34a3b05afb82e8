"""How close does ELF run to the machine's limit? Inference and training efficiency, one run.

Efficiency = the network's MAC/s ÷ the MAC/s of a dense, well-shaped convolution (bias-free 3×3,
48→48 channels on 1×48×256², in the faster memory layout, as `derain.studies.profiling
.dense_conv_throughput`) on the same device, threads and precision. The reference is timed in
the same run, interleaved with the network: every round times one network call and then the
reference for about as long, and the efficiency is the median of those paired ratios. A machine
that gets busier or quieter during the run moves both, so the ratio holds where latencies do not.

CPU (default): inference at batch 1 (eager, and compiled with frozen weights), and a training
step (forward, the paper's loss, backward, Adam) at batch 8 on 128² patches, counting 3× the
forward MACs (eager and compiled).
GPU (--device cuda): bf16 autocast + channels-last (+ compile) against eager fp32 in contiguous
layout: training on 256² patches at the largest batch up to 16 whose fp32 step fits in 60% of
the GPU's memory (`derain.runtime.memory.fitting_batch`), inference on one 1920×1080 image.
`derain.benchmarks.bench_gpu` checks the reduced precisions' accuracy as well.

    python -m derain.benchmarks.bench                    # CPU, 1 thread: 256², 1024², training; + compiled
    python -m derain.benchmarks.bench --quick            # 256² and training, eager only (about 3 min)
    python -m derain.benchmarks.bench --quick --straightforward  # and the unoptimised network, same run
    python -m derain.benchmarks.bench --threads 0        # all cores
    python -m derain.benchmarks.bench --record           # store the efficiencies in src/derain/benchmarks/recorded.json
    python -m derain.benchmarks.bench --quick --check    # exit 1 if one fell >25% below its record
    python -m derain.benchmarks.bench --device cuda      # GPU figures (see above)

One thread is the default because it is the figure that reproduces on a shared machine: with as
many threads as cores and other work running, OpenMP's spinning barriers make every small
operation wait for a descheduled thread (OMP_WAIT_POLICY=PASSIVE avoids it). The process keeps
the memory it frees (`retain_freed_memory`) unless --no-retain-memory: otherwise glibc hands
every large block back to the OS and each new activation page-faults (`elf` at 256² on one
thread: 2.34 s instead of 1.84 s, see docs/performance.md).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

RECORDED = Path(__file__).with_name("recorded.json")
TOLERANCE = 0.25  # --check fails when an efficiency falls more than this fraction below its record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default="elf")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; 0: all cores")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="inference sides (CPU: 256 1024; GPU: 1080)"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per figure")
    parser.add_argument(
        "--train-batch", type=int, help="training batch (CPU 8; GPU: the largest that fits, ≤ 16)"
    )
    parser.add_argument("--train-patch", type=int, help="training patch side (CPU 128, GPU 256)")
    parser.add_argument("--no-compile", action="store_true", help="eager figures only")
    parser.add_argument(
        "--straightforward",
        action="store_true",
        help="also time the unoptimised network (tests/models/reference.py), same weights",
    )
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--no-retain-memory", action="store_true", help="glibc's default malloc")
    parser.add_argument("--quick", action="store_true", help="--sizes 256 --no-compile --runs 3")
    parser.add_argument(
        "--json", type=Path, help="where to write the results (default logs/bench/<time>.json)"
    )
    parser.add_argument("--record", action="store_true", help=f"write efficiencies to {RECORDED}")
    parser.add_argument("--check", action="store_true", help="compare with the recorded figures")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if args.quick:
        args.sizes, args.no_compile, args.runs = args.sizes or [256], True, min(args.runs, 3)
    args.sizes = args.sizes or ([1080] if cuda else [256, 1024])
    args.train_batch = args.train_batch or (None if cuda else 8)  # GPU: chosen on the device
    args.train_patch = args.train_patch or (256 if cuda else 128)
    return args


@dataclass
class Figure:
    """One measured configuration: latencies of a call, MACs per call, paired efficiencies."""

    name: str  # task/variant/size
    macs: int
    latency_ms: list[float]
    efficiency_rounds: list[float]
    items_per_call: int = 1  # images (inference) or samples (training) per timed call
    compile_s: float | None = None
    notes: dict = field(default_factory=dict)

    @property
    def latency_ms_median(self) -> float:
        return statistics.median(self.latency_ms)

    @property
    def efficiency(self) -> float:
        return statistics.median(self.efficiency_rounds)

    @property
    def gmacs_per_s(self) -> float:
        return self.macs / 1e9 / (self.latency_ms_median / 1e3)

    @property
    def items_per_s(self) -> float:
        return self.items_per_call / (self.latency_ms_median / 1e3)

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "latency_ms_median": self.latency_ms_median,
            "efficiency": self.efficiency,
            "gmacs_per_s": self.gmacs_per_s,
            "items_per_s": self.items_per_s,
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu" and args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch starts OpenMP

    import torch

    from derain.runtime.memory import retain_freed_memory

    retained = not args.no_retain_memory and retain_freed_memory()
    if args.device == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
    elif not torch.cuda.is_available():
        print("--device cuda: no CUDA device is visible to torch", file=sys.stderr)
        return 2
    bench = CpuBench(args) if args.device == "cpu" else CudaBench(args)
    load_before = _load()
    figures = bench.run()
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(
            ["python -m derain.benchmarks.bench", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": {
            "device": args.device,
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
            "torch": torch.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "retain_freed_memory": retained,
            "load_average_before": load_before,
            "load_average_after": _load(),
            "reference_gmacs_per_s": bench.reference_rates,
        },
        "preset": args.preset,
        "figures": {f.name: f.to_dict() for f in figures},
    }
    print_table(report, figures)
    if args.json is None:
        stamp = report["date"].replace(":", "-")
        args.json = Path("logs") / "bench" / f"{args.device}_{args.preset}_{stamp}.json"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    if args.record:
        record(report)
    if args.check:
        return check(report)
    return 0


# --------------------------------------------------------------------------------------- timing
class Reference:
    """The dense convolution every figure is compared with, on the same device and precision."""

    def __init__(self, device, dtype=None) -> None:
        import torch

        from derain.studies.profiling import synchronize

        self.device, self.dtype, self._sync = device, dtype, synchronize
        self.macs = 48 * 48 * 9 * 256 * 256
        conv = torch.nn.Conv2d(48, 48, 3, padding=1, bias=False).to(device)
        x = torch.randn(1, 48, 256, 256, device=device)
        best = None
        for layout in (torch.contiguous_format, torch.channels_last):  # the faster one
            self.conv, self.x = conv.to(memory_format=layout), x.contiguous(memory_format=layout)
            seconds = min(self._time_calls(1) for _ in range(5))
            if best is None or seconds < best[0]:
                best = (seconds, self.conv, self.x)
        self.seconds, self.conv, self.x = best

    def _call(self) -> None:
        import torch

        with torch.inference_mode(), _autocast(self.device, self.dtype):
            self.conv(self.x)

    def _time_calls(self, n: int) -> float:
        self._call()
        self._sync(self.device)
        start = time.perf_counter()
        for _ in range(n):
            self._call()
        self._sync(self.device)
        return (time.perf_counter() - start) / n

    def rate_for(self, seconds: float) -> float:
        """MAC/s of the reference timed over about `seconds` (at least one call)."""
        calls = max(1, round(seconds / self.seconds))
        return self.macs / self._time_calls(calls)


def _autocast(device, dtype):
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def paired_rounds(
    name: str, call: Callable[[], object], macs: int, reference: Reference, runs: int, **extra
) -> Figure:
    """Times `call` in `runs` rounds, each paired with the reference for about as long."""
    from derain.studies.profiling import synchronize

    def timed() -> float:
        synchronize(reference.device)
        start = time.perf_counter()
        call()
        synchronize(reference.device)
        return time.perf_counter() - start

    estimate = timed()  # also the warm-up
    latencies, ratios = [], []
    for i in range(runs):
        if i % 2:  # alternate the order so that neither always runs first
            seconds = timed()
            rate = reference.rate_for(seconds)
        else:
            rate = reference.rate_for(estimate)
            seconds = timed()
        estimate = seconds
        latencies.append(seconds * 1e3)
        ratios.append(macs / seconds / rate)
    print(f"  {name}: {statistics.median(latencies):.1f} ms, eff {statistics.median(ratios):.3f}")
    return Figure(name, macs, latencies, ratios, **extra)


def count_macs_at(model, shape: tuple[int, ...]) -> int:
    """MACs of one forward pass at `shape`, counted on the meta device (no arithmetic)."""
    import torch

    from derain.studies.profiling import count_macs

    meta = copy.deepcopy(model).to("meta")
    return count_macs(meta, torch.empty(shape, device="meta"))


def _first_call_seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _training_step(model, loss, batch, dtype=None) -> Callable[[], None]:
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(batch["rainy"].device, dtype):
            value, _ = loss(model(batch["rainy"]), batch)
        value.backward()
        optimizer.step()

    return step


# ------------------------------------------------------------------------------------ CPU bench
class CpuBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.reference_rates: dict[str, float] = {}

    def run(self) -> list[Figure]:
        import torch

        from derain.models import ELF, optimize
        from derain.training.losses import ELFLoss

        args = self.args
        reference = Reference(torch.device("cpu"))
        self.reference_rates["fp32"] = reference.macs / reference.seconds / 1e9
        print(
            f"{args.preset} on CPU, {torch.get_num_threads()} thread(s); dense 3×3 conv "
            f"{self.reference_rates['fp32']:.1f} GMAC/s; load average {_load()}"
        )
        torch.manual_seed(0)
        eager = ELF.from_preset(args.preset).eval()
        straightforward = None
        if args.straightforward:
            straightforward = straightforward_network(args.preset).eval()
            straightforward.load_state_dict(eager.state_dict())
        compiled = None
        if not args.no_compile:  # inference only: the compiler may freeze the weights
            compiled = ELF.from_preset(args.preset).eval()
            compiled.load_state_dict(eager.state_dict())
            optimize(compiled, compile=True, freeze=True)
        figures = []
        for size in args.sizes:
            x = torch.rand(1, 3, size, size)
            macs = count_macs_at(eager, tuple(x.shape))
            variants = (
                ("straightforward", straightforward),
                ("eager", eager),
                ("compiled", compiled),
            )
            for kind, model in variants:
                if model is None:
                    continue

                def infer(model=model, x=x):
                    with torch.inference_mode():
                        return model(x)

                compile_s = _first_call_seconds(infer) if kind == "compiled" else None
                figures.append(
                    paired_rounds(
                        f"inference/{kind}/{size}",
                        infer,
                        macs,
                        reference,
                        args.runs,
                        compile_s=compile_s,
                    )
                )
        if not args.no_train:
            b, p = args.train_batch, args.train_patch
            macs = 3 * count_macs_at(eager, (b, 3, p, p))
            loss = ELFLoss()
            batch = {"rainy": torch.rand(b, 3, p, p), "clean": torch.rand(b, 3, p, p)}
            kinds = ["straightforward"] if args.straightforward else []
            kinds += ["eager"] if args.no_compile else ["eager", "compiled"]
            for kind in kinds:
                torch.manual_seed(0)
                if kind == "straightforward":
                    model = straightforward_network(args.preset).train()
                else:
                    model = ELF.from_preset(args.preset, compile=kind == "compiled").train()
                step = _training_step(model, loss, batch)
                compile_s = _first_call_seconds(step) if kind == "compiled" else None
                figures.append(
                    paired_rounds(
                        f"training/{kind}/{b}x{p}",
                        step,
                        macs,
                        reference,
                        max(3, args.runs - 2),
                        items_per_call=b,
                        compile_s=compile_s,
                    )
                )
        return figures


def straightforward_network(preset: str):
    """The network as the specification reads, before any speed work: the test oracle
    `derain.models.reference` (same parameters, same results)."""
    from derain.models import PRESETS
    from derain.models.reference import ReferenceELF

    return ReferenceELF(**PRESETS[preset].arguments)


# ----------------------------------------------------------------------------------- CUDA bench
class CudaBench:
    """bf16 autocast + channels-last (+ compile) against eager fp32 in contiguous layout.

    Not yet run on a GPU: it was written on a machine without one (its code path was exercised
    on CPU by swapping the device).
    """

    def __init__(self, args: argparse.Namespace, device: str = "cuda") -> None:
        self.args = args
        self.device = device
        self.reference_rates: dict[str, float] = {}

    def run(self) -> list[Figure]:
        import torch

        from derain.models import ELF
        from derain.training.losses import ELFLoss

        args, device = self.args, torch.device(self.device)
        torch.backends.cudnn.benchmark = True
        references = {"fp32": Reference(device), "bf16": Reference(device, torch.bfloat16)}
        for key, ref in references.items():
            self.reference_rates[key] = ref.macs / ref.seconds / 1e9
        print(
            f"{args.preset} on {device}; dense 3×3 conv "
            + ", ".join(f"{k} {v:.0f} GMAC/s" for k, v in self.reference_rates.items())
        )
        # (name, channels_last, autocast dtype, compile); the first is the baseline
        variants = [("fp32", False, None, False), ("bf16+cl", True, torch.bfloat16, False)]
        if not args.no_compile:
            variants.append(("bf16+cl+compiled", True, torch.bfloat16, True))
        torch.manual_seed(0)
        weights = ELF.from_preset(args.preset).state_dict()
        figures = []
        for size in args.sizes:
            h, w = (1080, 1920) if size == 1080 else (size, size)
            x = torch.rand(1, 3, h, w, device=device)
            for name, channels_last, dtype, compiled in variants:
                model = self._model(weights, channels_last, compiled, device).eval()
                macs = count_macs_at(model, tuple(x.shape))

                def infer(model=model, dtype=dtype, x=x):
                    with torch.inference_mode(), _autocast(device, dtype):
                        return model(x)

                compile_s = _first_call_seconds(infer) if compiled else None
                figures.append(
                    paired_rounds(
                        f"inference/{name}/{w}x{h}",
                        infer,
                        macs,
                        references["bf16" if dtype else "fp32"],
                        args.runs,
                        compile_s=compile_s,
                    )
                )
        if not args.no_train:
            p, loss = args.train_patch, ELFLoss()
            b = args.train_batch or self._fitting_batch(weights, loss, p, device)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the probe's memory, for the timed variants
            print(f"training batch {b} × {p}²")
            batch = {
                "rainy": torch.rand(b, 3, p, p, device=device),
                "clean": torch.rand(b, 3, p, p, device=device),
            }
            for name, channels_last, dtype, compiled in variants:
                model = self._model(weights, channels_last, compiled, device).train()
                macs = 3 * count_macs_at(model, (b, 3, p, p))
                step = _training_step(model, loss, batch, dtype)
                compile_s = _first_call_seconds(step) if compiled else None
                figures.append(
                    paired_rounds(
                        f"training/{name}/{b}x{p}",
                        step,
                        macs,
                        references["bf16" if dtype else "fp32"],
                        args.runs,
                        items_per_call=b,
                        compile_s=compile_s,
                    )
                )
        return figures

    def _fitting_batch(self, weights, loss, patch: int, device) -> int:
        """The largest batch ≤ 16 whose fp32 training step (the baseline, the most memory)
        fits in 60% of the GPU."""
        import torch

        from derain.runtime.memory import fitting_batch

        model = self._model(weights, False, False, device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)

        def step(b: int) -> None:
            batch = {k: torch.rand(b, 3, patch, patch, device=device) for k in ("rainy", "clean")}
            optimizer.zero_grad(set_to_none=True)
            loss(model(batch["rainy"]), batch)[0].backward()
            optimizer.step()

        return fitting_batch(step, device)

    def _model(self, weights, channels_last: bool, compiled: bool, device):
        from derain.models import ELF

        model = ELF.from_preset(self.args.preset, channels_last=channels_last, compile=compiled)
        model.load_state_dict(weights)
        return model.to(device)


# ------------------------------------------------------------------------------ report, record
def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def print_table(report: dict, figures: list[Figure]) -> None:
    m = report["machine"]
    print()
    print(
        f"{report['preset']} on {m['gpu'] or m['cpu']} ({m['threads']} threads, torch "
        f"{m['torch']}, OMP_WAIT_POLICY={m['omp_wait_policy']}, retain_freed_memory="
        f"{m['retain_freed_memory']}); load average {m['load_average_before']} → "
        f"{m['load_average_after']}"
    )
    header = (
        f"{'figure':34s} {'GMACs':>8s} {'ms':>10s} {'per s':>8s} {'GMAC/s':>8s} {'eff':>6s} "
        f"{'speed-up':>8s} {'compile s':>9s}"
    )
    print(header)
    print("-" * len(header))
    baselines: dict[tuple[str, str], Figure] = {}
    for f in figures:
        task, _, size = f.name.split("/")
        baseline = baselines.setdefault((task, size), f)
        compile_s = "" if f.compile_s is None else f"{f.compile_s:.0f}"
        print(
            f"{f.name:34s} {f.macs / 1e9:8.2f} {f.latency_ms_median:10.1f} "
            f"{f.items_per_s:8.2f} {f.gmacs_per_s:8.1f} {f.efficiency:6.3f} "
            f"{baseline.latency_ms_median / f.latency_ms_median:7.2f}× {compile_s:>9s}"
        )
    print(
        "eff: the network's MAC/s ÷ a dense 3×3 conv's, paired round by round (median); training "
        "counts 3× the forward MACs.\nms: median latency of one call (a batch for training); "
        "per s: images or samples per second;\nspeed-up: against the first row of the same task "
        "and size (eager, or eager fp32 on GPU); compile s: the first, compiling call."
    )


def _record_key(report: dict) -> str:
    m = report["machine"]
    return f"{m['device']}/{report['preset']}/threads={m['threads']}"


def record(report: dict) -> None:
    recorded = json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
    key = _record_key(report)
    recorded[key] = {
        "date": report["date"],
        "command": report["command"],
        "machine": report["machine"],
        "efficiency": {name: f["efficiency"] for name, f in report["figures"].items()},
    }
    RECORDED.write_text(json.dumps(recorded, indent=2) + "\n")
    print(f"recorded {len(report['figures'])} figures under {key!r} in {RECORDED}")


def check(report: dict) -> int:
    """0 when no figure recorded for this device/preset/threads fell more than TOLERANCE."""
    key = _record_key(report)
    recorded = json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
    if key not in recorded:
        print(f"--check: no figures recorded under {key!r} in {RECORDED}; run with --record")
        return 2
    failures, compared = [], 0
    for name, was in recorded[key]["efficiency"].items():
        if name not in report["figures"]:
            continue
        compared += 1
        now = report["figures"][name]["efficiency"]
        status = "ok" if now >= (1 - TOLERANCE) * was else "REGRESSED"
        print(f"  {name:34s} recorded {was:.3f}  now {now:.3f}  {status}")
        if status != "ok":
            failures.append(name)
    if not compared:
        print(f"--check: none of the figures recorded under {key!r} was measured")
        return 2
    if failures:
        print(f"--check: {len(failures)} figure(s) fell more than {TOLERANCE:.0%} below the record")
        return 1
    print(f"--check: {compared} figure(s) within {TOLERANCE:.0%} of the record")
    return 0


if __name__ == "__main__":
    sys.exit(main())

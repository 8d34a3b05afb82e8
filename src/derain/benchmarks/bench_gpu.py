"""GPU check: does the network train and infer correctly and fast in reduced precision?

One run, one table, sized for one GPU in under 10 minutes (`elf`, 256² patches):

- training, bf16 autocast against fp32 from the same weights on the same batches of photo
  patches with synthetic rain: the loss at every step (their largest relative difference),
  samples/s and peak memory, at the largest batch (up to 16) whose fp32 step fits in 60% of
  the device's memory ("loss vs fp32": the largest relative difference over the steps);
- training speed-ups in bf16: channels-last against contiguous maps, and compiled (regional
  torch.compile) against eager; each training row's first step (the compiled one's includes
  compiling) and whether every loss of its steps was finite;
- inference on a 1920×1080 photo in fp32, bf16 and fp16 autocast: finite or not, PSNR of each
  output against the fp32 output, latency and peak memory.

    python -m derain.benchmarks.bench_gpu                        # the check, on the GPU
    python -m derain.benchmarks.bench_gpu --ckpt logs/demo/runs/RUN/checkpoints/last.ckpt
                                                          # trained weights for the inference
    python -m derain.benchmarks.bench_gpu --device cpu --quick   # a smoke run of the same code on CPU

Without --ckpt, inference uses the weights after the bf16 training steps; a trained network has
larger activations (the attention's products grow with them), so --ckpt is the stronger check.
--quick: `elf_tiny`, 64² patches, batch 2, 3 steps, a 192×108 image, no compile (about a minute
on one CPU thread). The table, under the device's name, goes to stdout, all figures to a JSON
file (--json).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

FULL_HD = (1080, 1920)
MEMORY_SHARE = 0.6  # of the device's memory that the fp32 training step may use
MAX_BATCH = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--preset", help="network preset (default elf; --quick: elf_tiny)")
    parser.add_argument("--ckpt", type=Path, help="trained checkpoint for the inference rows")
    parser.add_argument("--patch", type=int, help="training patch side (default 256)")
    parser.add_argument("--batch", type=int, help="training batch (default: the largest that fits)")
    parser.add_argument("--steps", type=int, help="training steps per precision (default 20)")
    parser.add_argument("--timed", type=int, help="timed steps per speed figure (default 10)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled row")
    parser.add_argument("--quick", action="store_true", help="the small CPU-sized smoke run")
    parser.add_argument("--json", type=Path, help="default logs/bench/gpu_check_<time>.json")
    args = parser.parse_args(argv)
    quick = args.quick
    args.preset = args.preset or ("elf_tiny" if quick else "elf")
    args.patch = args.patch or (64 if quick else 256)
    args.steps = args.steps or (3 if quick else 20)
    args.timed = args.timed or (2 if quick else 10)
    args.no_compile = args.no_compile or quick
    args.image_size = (108, 192) if quick else FULL_HD
    if quick and args.batch is None:
        args.batch = 2
    return args


# ------------------------------------------------------------------------------------ inputs
def photo_batch(batch: int, patch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """`batch` random patch×patch crops of the training photos with light or heavy rain."""
    from derain.data.photos import crop_around, load_photo, photo_names
    from derain.data.synthetic import SyntheticRain

    rng = np.random.default_rng(seed)
    names = photo_names("train")
    rainy, clean = [], []
    for i in range(batch):
        photo = load_photo(names[i % len(names)])
        row, col = rng.integers(0, photo.shape[0]), rng.integers(0, photo.shape[1])
        crop = crop_around(photo, int(row), int(col), patch)
        sample = SyntheticRain("light" if i % 3 else "heavy", seed=seed)(crop, i)
        rainy.append(torch.from_numpy(np.ascontiguousarray(sample.rainy)).permute(2, 0, 1))
        clean.append(torch.from_numpy(np.ascontiguousarray(sample.clean)).permute(2, 0, 1))
    return {"rainy": torch.stack(rainy), "clean": torch.stack(clean)}


def photo_image(size: tuple[int, int]) -> torch.Tensor:
    """A test photo (coffee) resized to size = (H, W) with light rain, 1×3×H×W in [0, 1]."""
    from PIL import Image

    from derain.data.photos import load_photo
    from derain.data.synthetic import SyntheticRain

    pixels = np.round(load_photo("coffee") * 255).astype(np.uint8)
    resized = Image.fromarray(pixels).resize((size[1], size[0]), Image.Resampling.BICUBIC)
    clean = np.asarray(resized, dtype=np.float32) / 255.0
    rainy = SyntheticRain("light", seed=0)(clean, 0).rainy
    return torch.from_numpy(np.ascontiguousarray(rainy)).permute(2, 0, 1)[None]


# ------------------------------------------------------------------------------------ helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    """Peak memory allocated by tensors since the last reset, GiB (None on CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


class Trainer:
    """A network, the paper's loss and Adam, stepping on fixed batches in one precision."""

    def __init__(self, weights, args, device, dtype, channels_last=True, compiled=False):
        from derain.models import ELF
        from derain.training.losses import ELFLoss

        self.model = ELF.from_preset(args.preset, channels_last=channels_last, compile=compiled)
        self.model.load_state_dict(weights)
        self.model.to(device).train()
        self.loss = ELFLoss()
        fused = device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=2e-4, fused=fused)
        self.device, self.dtype = device, dtype
        self.losses: list[torch.Tensor] = []  # every step's loss, on the device

    def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.device, self.dtype):
            loss, _ = self.loss(self.model(batch["rainy"]), batch)
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.detach())
        return loss.detach()

    def finite(self) -> bool:
        """Whether every loss of this trainer's steps so far (timed ones included) is finite."""
        return all_finite(self.losses)

    def samples_per_s(self, batch, steps: int) -> float:
        self.step(batch)  # warm-up (and compilation)
        _sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step(batch)
        _sync(self.device)
        return steps * len(batch["rainy"]) / (time.perf_counter() - start)


def all_finite(values) -> bool:
    """True when every value (numbers or tensors of any shape) is finite; False for none."""
    values = list(values)
    if not values:
        return False
    return all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in values)


def fitting_batch(weights, args, device) -> int:
    """The largest power of two ≤ MAX_BATCH whose fp32 training step fits in MEMORY_SHARE of
    the device (derain.runtime.memory.fitting_batch); 8 on CPU."""
    from derain.runtime.memory import fitting_batch as largest

    if device.type != "cuda":
        return 8
    trainer = Trainer(weights, args, device, None)

    def step(batch: int) -> None:
        trainer.step({k: v.to(device) for k, v in photo_batch(batch, args.patch).items()})

    return largest(step, device, MAX_BATCH, MEMORY_SHARE)


def psnr_against(output: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR (dB, peak 1) of output against reference, both clamped to [0, 1]; inf if equal."""
    mse = (output.float().clamp(0, 1) - reference.float().clamp(0, 1)).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


# ------------------------------------------------------------------------------------ checks
def training_rows(weights, args, device) -> tuple[list[dict], dict, dict]:
    """bf16 against fp32 (loss agreement, samples/s, peak memory), then the bf16 speed-ups.
    Also returns the weights after the bf16 steps (on CPU)."""
    batches = [
        {k: v.to(device) for k, v in photo_batch(args.batch, args.patch, seed=s).items()}
        for s in range(args.steps)
    ]
    rows, losses = [], {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        trainer = Trainer(weights, args, device, dtype)
        start = time.perf_counter()
        losses[name] = [float(trainer.step(b)) for b in batches[:1]]
        first_s = time.perf_counter() - start  # float() above waited for the device
        losses[name] += [float(trainer.step(b)) for b in batches[1:]]
        if dtype is not None:
            trained = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
        _reset_peak(device)
        rate = trainer.samples_per_s(batches[0], args.timed)
        rows.append(
            {
                "check": f"training {name}, channels-last, eager",
                "samples_per_s": rate,
                "peak_gib": _peak_gib(device),
                "first_step_s": first_s,
                "finite": trainer.finite(),
            }
        )
        del trainer
    relative = [abs(b - f) / abs(f) for f, b in zip(losses["fp32"], losses["bf16"], strict=True)]
    agreement = {
        "loss_fp32": losses["fp32"],
        "loss_bf16": losses["bf16"],
        "first_step_relative_difference": relative[0],
        "max_relative_difference": max(relative),
    }
    rows[1]["loss_vs_fp32"] = max(relative)
    variants = [("contiguous, eager", False, False)]
    if not args.no_compile:
        variants.append(("channels-last, compiled", True, True))
    for label, channels_last, compiled in variants:
        trainer = Trainer(weights, args, device, torch.bfloat16, channels_last, compiled)
        start = time.perf_counter()
        trainer.step(batches[0])
        _sync(device)
        first_s = time.perf_counter() - start
        _reset_peak(device)
        rate = trainer.samples_per_s(batches[0], args.timed)
        rows.append(
            {
                "check": f"training bf16, {label}",
                "samples_per_s": rate,
                "peak_gib": _peak_gib(device),
                "first_step_s": first_s,  # the compiled row's includes compiling
                "finite": trainer.finite(),
            }
        )
        del trainer
    return rows, agreement, trained


def speed_ups(rows: list[dict]) -> dict[str, float]:
    """Ratios of training samples/s: bf16 over fp32, channels-last over contiguous maps (bf16),
    compiled over eager (bf16, channels-last)."""
    rate = {r["check"]: r["samples_per_s"] for r in rows if "samples_per_s" in r}
    base = rate["training bf16, channels-last, eager"]
    ratios = {
        "bf16 over fp32": base / rate["training fp32, channels-last, eager"],
        "channels-last over contiguous": base / rate["training bf16, contiguous, eager"],
    }
    if "training bf16, channels-last, compiled" in rate:
        ratios["compiled over eager"] = rate["training bf16, channels-last, compiled"] / base
    return ratios


def inference_rows(model, args, device) -> list[dict]:
    """fp32, bf16 and fp16 autocast on one photo of args.image_size: finite, PSNR vs fp32."""
    image = photo_image(args.image_size).to(device)
    model = model.to(device).eval()
    outputs, rows = {}, []
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        _reset_peak(device)
        with torch.inference_mode(), _autocast(device, dtype):
            model(image)  # warm-up
            _sync(device)
            start = time.perf_counter()
            output = model(image).image.float()
            _sync(device)
        latency = time.perf_counter() - start
        outputs[name] = output
        rows.append(
            {
                "check": f"inference {name} {args.image_size[1]}×{args.image_size[0]}",
                "latency_ms": latency * 1e3,
                "peak_gib": _peak_gib(device),
                "finite": bool(torch.isfinite(output).all()),
                "psnr_vs_fp32": psnr_against(output, outputs["fp32"]) if dtype else None,
            }
        )
    return rows


def _cell(value, fmt: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return format(value, fmt)


def device_name(device: torch.device) -> str:
    """The GPU's name (e.g. "NVIDIA H100 80GB HBM3"), or "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def compile_seconds(rows: list[dict]) -> float | None:
    """Seconds the compiled row's first step took beyond the eager one's (compilation, mostly);
    None without a compiled row."""
    first = {r["check"]: r.get("first_step_s") for r in rows}
    compiled = first.get("training bf16, channels-last, compiled")
    eager = first.get("training bf16, channels-last, eager")
    return None if compiled is None or eager is None else compiled - eager


def print_table(rows: list[dict], device: str = "cpu") -> str:
    """Prints (and returns) the table of `rows`, under a line naming the device and torch."""
    header = (
        "| check | finite | loss vs fp32 | samples/s | first step s | latency ms "
        "| PSNR vs fp32 dB | peak GiB |"
    )
    lines = [
        f"device: {device}, torch {torch.__version__}",
        "",
        header,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['check']} | {_cell(r.get('finite'), '')} "
            f"| {_cell(r.get('loss_vs_fp32'), '.2e')} | {_cell(r.get('samples_per_s'), '.1f')} "
            f"| {_cell(r.get('first_step_s'), '.2f')} | {_cell(r.get('latency_ms'), '.1f')} "
            f"| {_cell(r.get('psnr_vs_fp32'), '.2f')} | {_cell(r.get('peak_gib'), '.2f')} |"
        )
    compiling = compile_seconds(rows)
    if compiling is not None:
        lines += ["", f"compile time (first compiled step beyond the eager one): {compiling:.1f} s"]
    table = "\n".join(lines)
    print(table)
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "no CUDA device is visible to torch; --device cpu --quick runs on CPU", file=sys.stderr
        )
        return 2
    from derain.models import ELF

    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    weights = ELF.from_preset(args.preset).state_dict()
    args.batch = args.batch or fitting_batch(weights, args, device)
    started = time.perf_counter()
    print(f"{args.preset}, batch {args.batch} × {args.patch}², {args.steps} steps, on {device}")
    rows, agreement, trained = training_rows(weights, args, device)
    if args.ckpt is not None:
        from derain.inference import load_model

        network, weights_from = load_model(args.ckpt, device="cpu"), str(args.ckpt)
    else:
        network = ELF.from_preset(args.preset)
        network.load_state_dict(trained)
        weights_from = f"{args.steps} bf16 training steps from random weights"
    rows += inference_rows(copy.deepcopy(network), args, device)
    table = print_table(rows, device_name(device))
    ratios = speed_ups(rows)
    print("training speed-ups: " + ", ".join(f"{k} ×{v:.2f}" for k, v in ratios.items()))
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(
            ["python -m derain.benchmarks.bench_gpu", *(sys.argv[1:] if argv is None else argv)]
        ),
        "device": device_name(device),
        "compile_s": compile_seconds(rows),
        "torch": torch.__version__,
        "preset": args.preset,
        "batch": args.batch,
        "patch": args.patch,
        "inference_weights": weights_from,
        "seconds": time.perf_counter() - started,
        "agreement": agreement,
        "speed_ups": ratios,
        "rows": rows,
        "table": table,
    }
    print(
        f"bf16 loss vs fp32: first step {agreement['first_step_relative_difference']:.2e}, "
        f"largest over {args.steps} steps {agreement['max_relative_difference']:.2e} "
        f"(median fp32 loss {statistics.median(agreement['loss_fp32']):.4f}); "
        f"{report['seconds']:.0f} s"
    )
    if args.json is None:
        stamp = report["date"].replace(":", "-")
        args.json = Path("logs") / "bench" / f"gpu_check_{device.type}_{stamp}.json"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

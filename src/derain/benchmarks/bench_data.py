"""Is the data pipeline fast enough? Loader throughput against what training consumes.

Measures, in one run:
  1. pairs/s delivered by the training loader of conf/data/synthetic.yaml at its defaults
     (patch size, batch size, workers);
  2. synthetic rain generation, images/s at 256² in this one process, for every rain preset
     and for light rain saved as JPEG (the photo-like option that costs most);
  3. training steps of the elf_small model at the same batch (forward, loss, backward, Adam),
     as pairs/s — what the loader has to keep up with.

The loader should deliver at least 4× what training consumes, and generation at least
20 images/s.

    python -m derain.benchmarks.bench_data
    python -m derain.benchmarks.bench_data --batches 40 --steps 5 --json bench_data.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from derain.data import SyntheticRain, load_photo
from derain.data.synthetic import RAIN_PRESETS, rain_config
from derain.paths import config_dir

GENERATION_SIDE = 256
REQUIRED_LOADER_MARGIN = 4.0
REQUIRED_GENERATION_RATE = 20.0


def loader_rate(batches: int) -> tuple[float, dict]:
    """Pairs/s of the default synthetic training loader, after its workers have started."""
    with initialize_config_dir(version_base=None, config_dir=str(config_dir())):
        cfg = compose(overrides=["+data=synthetic"])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    iterator = iter(datamodule.train_dataloader())
    first = next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    pairs = sum(len(next(iterator)["name"]) for _ in range(batches))
    rate = pairs / (time.perf_counter() - start)
    settings = {
        "patch_size": int(first["rainy"].shape[-1]),
        "batch_size": int(first["rainy"].shape[0]),
        "num_workers": datamodule.num_workers,
    }
    return rate, settings


def generation_rate(preset: str, images: int, **settings) -> float:
    """Images/s of SyntheticRain at 256² in this process; `settings` replace the preset's."""
    photo = load_photo("astronaut")
    rain = SyntheticRain(rain_config(preset, **settings), seed=0)
    crops = [
        photo[(37 * i) % 256 : (37 * i) % 256 + GENERATION_SIDE, :GENERATION_SIDE]
        for i in range(images)
    ]
    rain(crops[0], images)  # first-call overhead (FFT plans, imports)
    start = time.perf_counter()
    for index, crop in enumerate(crops):
        rain(crop, index)
    return images / (time.perf_counter() - start)


def training_rate(batch_size: int, patch_size: int, steps: int, device: str) -> float | None:
    """Pairs/s consumed by elf_small training steps; None when the model is missing."""
    try:
        from derain.models import ELF
    except ImportError as err:
        print(f"elf_small is not available ({err}); training rate not measured")
        return None
    model = ELF.from_preset("elf_small").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    generator = torch.Generator().manual_seed(0)
    rainy = torch.rand(batch_size, 3, patch_size, patch_size, generator=generator).to(device)
    clean = torch.rand(batch_size, 3, patch_size, patch_size, generator=generator).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(model(rainy).image, clean)
        loss.backward()
        optimizer.step()

    step()  # first-call overhead
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=30, help="loader batches timed")
    parser.add_argument("--images", type=int, default=40, help="images generated per preset")
    parser.add_argument("--steps", type=int, default=2, help="training steps timed")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where elf_small trains (default: cuda when available)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    loader, settings = loader_rate(args.batches)
    generation = {preset: generation_rate(preset, args.images) for preset in RAIN_PRESETS}
    generation["light + JPEG"] = generation_rate("light", args.images, jpeg_share=1.0)
    training = training_rate(
        settings["batch_size"], settings["patch_size"], args.steps, args.device
    )
    margin = loader / training if training else None

    rows = [
        (
            f"training loader (synthetic, {settings['patch_size']}² × {settings['batch_size']}, "
            f"{settings['num_workers']} workers)",
            f"{loader:8.1f} pairs/s",
        ),
        *(
            (f"generation, {name}, {GENERATION_SIDE}², 1 process", f"{rate:8.1f} img/s")
            for name, rate in generation.items()
        ),
        (
            f"elf_small training consumption ({args.device})",
            f"{training:8.1f} pairs/s" if training else "     n/a",
        ),
        ("loader / training", f"{margin:8.1f} ×" if margin else "     n/a"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    generation_ok = min(generation.values()) >= REQUIRED_GENERATION_RATE
    margin_ok = margin is None or margin >= REQUIRED_LOADER_MARGIN
    print(
        f"generation ≥ {REQUIRED_GENERATION_RATE:.0f} img/s: {'yes' if generation_ok else 'NO'}; "
        f"loader ≥ {REQUIRED_LOADER_MARGIN:.0f}× training: "
        + ("n/a" if margin is None else "yes" if margin_ok else "NO")
    )
    if args.json is not None:
        result = {
            "loader_pairs_per_s": loader,
            "loader_settings": settings,
            "generation_images_per_s": generation,
            "generation_side": GENERATION_SIDE,
            "training_pairs_per_s": training,
            "training_device": args.device,
            "loader_over_training": margin,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

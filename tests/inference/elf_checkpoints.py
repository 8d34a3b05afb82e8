"""A seeded `elf_tiny` and checkpoints written as training writes them, for the inference tests.

(A helper module rather than a conftest.py, so that test modules import it by a unique name.)
"""

from __future__ import annotations

from pathlib import Path

import torch

from derain.inference import elf_arguments
from derain.models import ELF


def tiny_elf(seed: int = 0) -> ELF:
    torch.manual_seed(seed)
    return ELF.from_preset("elf_tiny").eval()


def write_lightning_checkpoint(model: ELF, path: Path, config: dict | None = None) -> Path:
    """A checkpoint laid out as the LightningModule saves it: the network under `model.`, a loss
    buffer beside it, and the network's config in hyper_parameters['model']."""
    config = config or {"_target_": "derain.models.ELF", **elf_arguments(model)}
    state_dict = {f"model.{key}": value for key, value in model.state_dict().items()}
    state_dict["loss.edge_kernel"] = torch.ones(1, 1, 3, 3)
    checkpoint = {
        "epoch": 3,
        "global_step": 120,
        "state_dict": state_dict,
        "hyper_parameters": {"model": config, "metric_channel": "y"},
    }
    torch.save(checkpoint, path)
    return path


def train_briefly(
    steps: int = 100,
    crop: int = 48,
    batch: int = 4,
    seed: int = 0,
    ablation: str | None = "background_head",
) -> ELF:
    """An `elf_tiny` trained for a few seconds (≈15 s for the defaults on one thread) on crops
    of the training photos with light synthetic rain: already clearly better than its input on
    light rain over a held-out photo, so tests can check that deraining helps.

    Plain L1 and Adam at a high rate, no Lightning: the tests need a model that helps, not the
    project's recipe (which `derain-train` tests cover). `ablation` names a conf/model/ablation
    file applied to the preset: the background head learns in 100 steps what the paper's head
    (ablation=None) needs several hundred for (+0.5 dB on a held-out photo after 200 steps).
    """
    import numpy as np
    from omegaconf import OmegaConf

    from derain.data.photos import fit_longest_side, load_photo, photo_names
    from derain.data.synthetic import SyntheticRain
    from derain.paths import config_dir

    overrides = {}
    if ablation is not None:
        overrides = OmegaConf.to_container(
            OmegaConf.load(config_dir() / "model" / "ablation" / f"{ablation}.yaml")
        )
    torch.manual_seed(seed)
    model = ELF.from_preset("elf_tiny", **overrides)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rain = SyntheticRain("light", seed=seed)
    photos = [fit_longest_side(load_photo(name), 256) for name in photo_names("train")]
    rng = np.random.default_rng(seed)
    for step in range(steps):
        rainy, clean = [], []
        for item in range(batch):
            photo = photos[rng.integers(len(photos))]
            top = rng.integers(photo.shape[0] - crop + 1)
            left = rng.integers(photo.shape[1] - crop + 1)
            patch = np.ascontiguousarray(photo[top : top + crop, left : left + crop])
            sample = rain(patch, key=(step, item))
            rainy.append(sample.rainy)
            clean.append(sample.clean)
        x = torch.from_numpy(np.stack(rainy)).permute(0, 3, 1, 2)
        y = torch.from_numpy(np.stack(clean)).permute(0, 3, 1, 2)
        loss = (model(x).image - y).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()

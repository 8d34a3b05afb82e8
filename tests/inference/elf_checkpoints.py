"""A seeded `elf_tiny` and checkpoints written as training writes them, for the inference tests.

(A helper module rather than a conftest.py: a second conftest module would replace the root one
that `from conftest import run_cli` reads.)
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

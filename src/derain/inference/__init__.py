"""Inference on real photos: checkpoint loading, tiling, self-ensemble and export.

Depends on the network only (no Lightning, no data modules):

    restorer = derain.load("model.ckpt", max_memory="2GB")
    clean = restorer(rainy)            # NumPy / PIL / torch in, the same kind out
"""

from derain.inference.checkpoint import (
    CheckpointError,
    StoredNetwork,
    elf_arguments,
    load_model,
    load_network,
    save_checkpoint,
    save_safetensors,
)
from derain.inference.export import export, export_onnx, export_torchscript
from derain.inference.restorer import Restorer, TilePlan, load, resolve_device
from derain.inference.tiling import parse_memory_size, tiled_apply
from derain.models.ensemble import self_ensemble

__all__ = [
    "CheckpointError",
    "Restorer",
    "StoredNetwork",
    "TilePlan",
    "elf_arguments",
    "export",
    "export_onnx",
    "export_torchscript",
    "load",
    "load_model",
    "load_network",
    "parse_memory_size",
    "resolve_device",
    "save_checkpoint",
    "save_safetensors",
    "self_ensemble",
    "tiled_apply",
]

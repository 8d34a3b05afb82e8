"""Inference on real photos: checkpoint loading, tiling, self-ensemble and export.

Depends on the network only (no Lightning, no data modules):

    restorer = derain.load()           # the bundled model; or a name, folder or checkpoint
    restorer = derain.load("model.ckpt", max_memory="2GB")   # settings: InferenceSettings
    clean = restorer(rainy)            # NumPy / PIL / torch in, the same kind out
    restorer.derain_file("IMG_1.jpg", "out/IMG_1.jpg")   # keeps format, profile, EXIF, alpha...
"""

from derain.inference.checkpoint import (
    CheckpointError,
    StoredNetwork,
    elf_arguments,
    load_model,
    load_network,
    save_checkpoint,
    save_pretrained,
    save_safetensors,
)
from derain.inference.export import export, export_onnx, export_torchscript
from derain.inference.photo_files import Photo, PhotoReadError, read_photo, write_photo
from derain.inference.restorer import DerainedPhoto, Restorer, TilePlan, load, resolve_device
from derain.inference.settings import InferenceSettings
from derain.inference.sources import DEFAULT_MODEL, bundled_models, resolve_model
from derain.inference.tiling import parse_memory_size, tiled_apply
from derain.models.ensemble import self_ensemble

__all__ = [
    "DEFAULT_MODEL",
    "CheckpointError",
    "DerainedPhoto",
    "InferenceSettings",
    "Photo",
    "PhotoReadError",
    "Restorer",
    "StoredNetwork",
    "TilePlan",
    "bundled_models",
    "elf_arguments",
    "export",
    "export_onnx",
    "export_torchscript",
    "load",
    "load_model",
    "load_network",
    "parse_memory_size",
    "read_photo",
    "resolve_device",
    "resolve_model",
    "save_checkpoint",
    "save_pretrained",
    "save_safetensors",
    "self_ensemble",
    "tiled_apply",
    "write_photo",
]

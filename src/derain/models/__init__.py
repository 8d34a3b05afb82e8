"""The ELF association network in plain PyTorch (no Lightning, Hydra or data imports)."""

from derain.models.authors import AuthorsCheckpointError, from_authors
from derain.models.elf import ELF, ELFOutput, compile_blocks, optimize, pad_to_multiple
from derain.models.presets import PRESETS, Preset, preset_arguments

__all__ = [
    "AuthorsCheckpointError",
    "ELF",
    "ELFOutput",
    "PRESETS",
    "Preset",
    "compile_blocks",
    "from_authors",
    "optimize",
    "pad_to_multiple",
    "preset_arguments",
]

"""derain: the ELF association network for single-image deraining."""

import importlib

__version__ = "0.1.0"

_PARTS = frozenset({"data", "evaluation", "inference", "models", "runtime", "studies", "training"})


def load(*args, **kwargs):
    """`derain.inference.load`: a `Restorer` for the bundled model (no arguments), a short name,
    a model folder or a checkpoint (imported on first use, so `import derain` stays light)."""
    from derain.inference import load as _load

    return _load(*args, **kwargs)


def __getattr__(name: str):
    # `import derain; derain.inference.bundled_models()` works without importing every part
    # (and torch) at `import derain`
    if name in _PARTS:
        return importlib.import_module(f"derain.{name}")
    raise AttributeError(f"module 'derain' has no attribute {name!r}")

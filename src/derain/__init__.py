"""derain: the ELF association network for single-image deraining."""

__version__ = "0.1.0"


def load(*args, **kwargs):
    """`derain.inference.load`: a `Restorer` for the bundled model (no arguments), a short name,
    a model folder or a checkpoint (imported on first use, so `import derain` stays light)."""
    from derain.inference import load as _load

    return _load(*args, **kwargs)

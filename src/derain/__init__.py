"""derain: the ELF association network for single-image deraining."""

__version__ = "0.1.0"

"""Thin command-line entry points (Hydra apps) on top of the library."""

from __future__ import annotations

import sys

from omegaconf import OmegaConf
from rich.console import Console


def make_console() -> Console:
    """A rich console; when output goes to a pipe or file, wide enough that tables are not cut."""
    return Console() if sys.stdout.isatty() else Console(width=140)


def _command_help(config_name: str) -> str:
    from derain.cli.help import command_help

    return command_help(config_name)


# `hydra.help.template: ${derain.help:NAME}` in conf/: every command's --help
if not OmegaConf.has_resolver("derain.help"):
    OmegaConf.register_new_resolver("derain.help", _command_help)

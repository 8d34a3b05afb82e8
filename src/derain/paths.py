"""Where the project's Hydra configs live, for the repository checkout and the installed wheel,
and the resolvers those configs use to name run folders (`derain.runtime.launch`)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from derain.runtime import launch

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """Absolute path of the `conf/` tree.

    An editable install (the Makefile's) uses the repository's `conf/`; a wheel carries a copy at
    `derain/conf`.
    """
    for candidate in (_PACKAGE_DIR.parents[1] / "conf", _PACKAGE_DIR / "conf"):
        if (candidate / "model").is_dir():
            return candidate
    raise FileNotFoundError(
        f"derain's config tree was not found next to {_PACKAGE_DIR}: expected "
        f"{_PACKAGE_DIR.parents[1] / 'conf'} (checkout) or {_PACKAGE_DIR / 'conf'} (wheel)"
    )


def _command_help(config_name: str) -> str:
    from derain.runtime.help import command_help

    return command_help(config_name)


def register_resolvers() -> None:
    """The `${derain.*:}` interpolations of conf/: run folder name, per-process log name, the
    `.hydra/` folder written by the first process only, the SLURM launcher's tasks and GPUs
    per node, and every command's --help (`hydra.help.template: ${derain.help:NAME}`,
    `derain.runtime.help`). Registered on import."""
    resolvers = {
        "derain.help": (_command_help, False),
        # cached: one name per composed config, like Hydra's ${now:}
        "derain.run_name": (launch.run_name, True),
        "derain.rank_suffix": (launch.rank_suffix, False),
        "derain.rank_zero_only": (launch.rank_zero_only, False),
        # the SLURM launcher's resources, from the trainer's settings
        "derain.slurm_tasks_per_node": (launch.slurm_tasks_per_node, False),
        "derain.slurm_gpus_per_node": (launch.slurm_gpus_per_node, False),
    }
    for name, (function, cache) in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=cache)


register_resolvers()

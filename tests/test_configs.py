"""The config tree: how its groups compose, and every option of every group composes, resolves
and builds (a broken config fails here in seconds, not in a training run)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from derain.paths import config_dir

CALLBACKS = [
    "best_checkpoint",
    "last_checkpoint",
    "timed_checkpoint",
    "preemption",
    "random_states",
    "skipped_samples",
    "ema",
    "lr_monitor",
    "throughput",
    "progress_bar",
]


def test_each_callback_has_its_own_file_and_the_default_composes_them_all(compose_config):
    folder = config_dir() / "callbacks"
    for name in CALLBACKS:
        # one file per callback, holding that callback only, under its own name
        assert list(OmegaConf.load(folder / f"{name}.yaml")) == [name]
    assert list(compose_config("train").callbacks) == CALLBACKS


def test_a_callback_is_dropped_or_changed_by_its_key(compose_config):
    cfg = compose_config("train", ["callbacks.ema=null"])
    assert cfg.callbacks.ema is None
    cfg = compose_config("train", ["callbacks.ema.decay=0.5"])
    assert cfg.callbacks.ema.decay == 0.5
    assert cfg.callbacks.best_checkpoint.monitor == "val/psnr"


# ----------------------------------------------------------------------------- every option
CONF = config_dir()
PRIMARY = sorted((p.stem for p in CONF.glob("*.yaml")), key=lambda name: (name != "train", name))
"""The top-level configs, train first: a group it composes is tested in its company."""
OPTIONS = sorted(
    ("/".join(p.relative_to(CONF).parts[:-1]), p.stem)
    for p in CONF.rglob("*.yaml")
    if len(p.relative_to(CONF).parts) > 1
)
"""(group, option) of every file in a folder of conf/, nested groups (model/ablation) included:
a new group or option is tested without touching this file."""


@functools.cache
def _choices(primary: str) -> dict[str, str]:
    """The config groups `primary` composes, by the key that selects them on the command line
    (`run@_global_`, `model/ablation`, ...)."""
    with initialize_config_dir(version_base=None, config_dir=str(CONF)):
        cfg = compose(primary, return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.runtime.choices)


def _selector(group: str) -> tuple[str, str] | None:
    """(a top-level config that composes `group`, the override key selecting its option)."""
    for primary in PRIMARY:
        for key in _choices(primary):
            if key.split("@")[0] == group:
                return primary, key
    return None


def _composed(primary: str, overrides: list[str], tmp_path: Path) -> DictConfig:
    """`primary` with `overrides`, the Hydra node included; required values (`???`) get a
    folder, and run folders go to tmp_path."""
    with initialize_config_dir(version_base=None, config_dir=str(CONF)):
        cfg = compose(primary, overrides, return_hydra_config=True)
        missing = _missing(cfg)
        if missing:
            filled = [*overrides, *(f"{k}={tmp_path}" for k in missing)]
            cfg = compose(primary, filled, return_hydra_config=True)
    if "paths" in cfg:
        cfg.paths.output_dir = str(tmp_path)
    return cfg


@contextlib.contextmanager
def _as_in_a_run(cfg: DictConfig) -> Iterator[DictConfig]:
    """`cfg` but Hydra's own node, with `${hydra:...}` answered as in a run."""
    HydraConfig.instance().set_config(cfg)
    try:
        yield OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    finally:
        HydraConfig.instance().cfg = None


def _missing(cfg: DictConfig) -> list[str]:
    """The keys of `cfg` (Hydra's aside) whose value is required (`???`)."""

    def walk(node, prefix: str) -> Iterator[str]:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if value == "???":
                yield f"{prefix}{key}"
            elif isinstance(value, dict | list):
                yield from walk(value, f"{prefix}{key}.")

    plain = OmegaConf.to_container(cfg, resolve=False)
    return [k for k in walk(plain, "") if not k.startswith("hydra.")]


def _resolved(cfg: DictConfig) -> dict:
    """Every value of `cfg` but Hydra's own, interpolations resolved as in a run."""
    with _as_in_a_run(cfg) as settings:
        return OmegaConf.to_container(settings, resolve=True, throw_on_missing=True)


class _Trainer:
    """What a schedule reads of the trainer."""

    estimated_stepping_batches = 100
    callbacks: list = []


def _instantiate(part: str, cfg: DictConfig) -> None:
    """Builds the objects of `cfg[part]` (tiny networks, CPU trainers, offline W&B)."""
    node = cfg[part]
    if part == "model" and node is not None:
        assert isinstance(instantiate(node, width=8, depth=1, compile=False), torch.nn.Module)
    elif part in ("optimizer", "scheduler"):
        optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
        assert isinstance(optimizer, torch.optim.Optimizer)
        if cfg.get("scheduler"):
            schedule = instantiate(cfg.scheduler)(optimizer, _Trainer())
            assert isinstance(schedule["scheduler"], torch.optim.lr_scheduler.LRScheduler)
    elif part in ("callbacks", "logger"):
        for name, entry in (node or {}).items():
            if entry is None:  # dropped, e.g. callbacks.progress_bar=null
                continue
            extra = {"offline": True} if name == "wandb" else {}
            assert instantiate(entry, **extra) is not None, name
    elif part == "trainer":
        # the Trainer's own arguments are checked on this machine's CPU
        on_cpu = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
        trainer = instantiate(node, logger=False, **on_cpu)
        assert trainer.max_epochs == node.max_epochs
    elif part == "module":
        from derain.training.module import DerainModule

        DerainModule(model={"_target_": "derain.models.ELF", "width": 8, "depth": 1}, **node)
    elif part == "hydra":
        for entry in node.callbacks.values():
            instantiate(entry)
    elif part == "data" and node.get("root") is None and "train" in node:
        instantiate(node)  # synthetic data: no files needed
    elif OmegaConf.is_dict(node) and "_target_" in node and part not in ("data",):
        instantiate(node)


@pytest.mark.parametrize("primary", PRIMARY)
def test_every_command_config_composes_and_resolves(primary, tmp_path):
    assert _resolved(_composed(primary, [], tmp_path))


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_composes_resolves_and_builds(group, option, tmp_path):
    selector = _selector(group)
    if selector is None:
        # chosen inside other options only (data/loader@_here_ in each data config)
        with initialize_config_dir(version_base=None, config_dir=str(CONF)):
            assert compose(f"{group}/{option}")
        return
    primary, key = selector
    cfg = _composed(primary, [f"{key}={option}"], tmp_path)
    assert OmegaConf.to_container(cfg.hydra.runtime.choices)[key] == option
    _resolved(cfg)
    text = (CONF / group / f"{option}.yaml").read_text(encoding="utf-8")
    everywhere = "@package _global_" in text or "@_global_" in key
    parts = [k for k in cfg if k != "hydra"] if everywhere else [group.split("/")[0]]
    if "hydra" in parts:
        _instantiate("hydra", cfg)
    with _as_in_a_run(cfg) as settings:
        for part in parts:
            if part in settings:
                _instantiate(part, settings)

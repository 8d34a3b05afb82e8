"""ELF weights for inference, from training checkpoints and safetensors files — without running code.

A checkpoint must never choose which code runs: a Lightning `.ckpt` is read with
`torch.load(weights_only=True)` (tensors and plain containers only), and the network is always
built as `ELF(**arguments)` from the stored config after checking that its `_target_` names ELF;
the config is never handed to `hydra.utils.instantiate`.

Layouts read:
  `.ckpt` (Lightning): `state_dict` holds the network under `model.` (other prefixes, e.g. `loss.`,
      are ignored) and `hyper_parameters["model"]` is `{"_target_": "derain.models.ELF", ...}`.
  `.safetensors`: the network's own state-dict keys, and the same config as JSON under the
      metadata key `model` (written by `save_safetensors`).

Either may also name the network's `max_tile` (`hyper_parameters["max_tile"]`, metadata key
`max_tile`): the largest input side it works well on in one pass (see `StoredNetwork`).
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_model

from derain.inference.atomic import new_mode, replacing
from derain.inference.sources import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelSource,
    resolve_model,
)
from derain.inference.tiling import check_max_tile
from derain.models import ELF
from derain.models.authors import AuthorsCheckpointError, from_authors
from derain.models.blocks import TransformerBlock

ELF_TARGETS = frozenset({"derain.models.ELF", "derain.models.elf.ELF"})
"""The only `_target_` values a checkpoint's model config may name."""

STATE_DICT_PREFIX = "model."
"""Where the LightningModule keeps the network in its state dict."""

_ELF_PARAMETERS = frozenset(inspect.signature(ELF).parameters)


class CheckpointError(ValueError):
    """A file that cannot, or must not, be turned into an ELF network; the message names it."""


@dataclass(frozen=True)
class StoredNetwork:
    """What a checkpoint holds for inference and evaluation, read from the file once.

    model: the ELF network in eval mode. config: its stored `{"_target_": ..., **arguments}`.
    hyper_parameters: the rest of a Lightning checkpoint's `hyper_parameters` (metric channel,
    panel size...); empty for a `.safetensors` file.
    max_tile: the largest input side (pixels, a multiple of 16) the network works well on in one
    pass, or None for no limit. ELF's attention weighs channels by statistics of the whole
    input, so a network trained on small patches can drift on much larger images (one trained
    on 64² patches darkened bright parts of rainy 1920×1080 photos in one pass, and gained
    6–9 dB more in 192–256-pixel tiles); `Restorer` and `derain-eval` then work in tiles of at
    most this side.
    """

    model: ELF
    config: dict[str, Any]
    hyper_parameters: dict[str, Any]
    max_tile: int | None = None

    def chosen_max_tile(self, setting: Any = "model") -> Any:
        """The max_tile a command hands on: the network's own for "model", else `setting` (None
        lifts the limit, a number replaces it; whoever tiles checks it)."""
        if setting == "model":
            return self.max_tile
        if isinstance(setting, str):
            raise ValueError(f"max_tile={setting!r}: expected model, null or a multiple of 16")
        return setting


def load_model(source: ModelSource = None, device: str | torch.device = "cpu") -> ELF:
    """The ELF network `source` names, in eval mode (`load_network`'s model)."""
    return load_network(source, device).model


def load_network(source: ModelSource = None, device: str | torch.device = "cpu") -> StoredNetwork:
    """Reads a model once: the ELF network (in eval mode on `device`), its config and the
    checkpoint's other hyper-parameters.

    Every command that loads weights comes through here (`derain.inference.load`,
    `DerainModule.from_checkpoint`, export, the web app).

    Args:
        source: None (the bundled default model), a bundled model's short name, a model folder,
            a derain `.ckpt` or `.safetensors` file, or one of the authors' checkpoints (read by
            `derain.models.from_authors` when the file is not a derain checkpoint); see
            `derain.inference.sources.resolve_model`.

    Raises:
        FileNotFoundError: nothing by that name or path (the message lists the bundled models).
        CheckpointError: the file holds pickled objects other than tensors and plain containers,
            names a `_target_` other than ELF, lacks the config or the weights, or its weights do
            not fit the network its config describes — and is not an authors' checkpoint either.
    """
    path = resolve_model(source)
    try:
        return _read_network(path, device)
    except CheckpointError as derain_error:
        if path.suffix == ".safetensors":
            raise
        try:
            model = from_authors(path)
        except AuthorsCheckpointError as authors_error:
            raise CheckpointError(
                f"{path} is neither a derain checkpoint ({derain_error}) nor one of the authors' "
                f"({authors_error})"
            ) from None
        config = {"_target_": "derain.models.ELF", **elf_arguments(model)}
        return StoredNetwork(model.to(device).eval(), config, {})


def _read_network(path: Path, device: str | torch.device) -> StoredNetwork:
    """A derain `.ckpt` or `.safetensors` file's network, config and hyper-parameters."""
    hyper_parameters: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        config, state_dict, hyper_parameters = _read_safetensors(path)
    else:
        config, state_dict, hyper_parameters = _read_lightning_checkpoint(path)
    arguments = _elf_arguments_from_config(config, path)
    try:
        model = ELF(**arguments)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the model config does not build an ELF: {err}") from None
    if not state_dict:
        raise CheckpointError(
            f"{path} holds no network weights (state-dict keys under {STATE_DICT_PREFIX!r} in a "
            ".ckpt, the network's own keys in a .safetensors file)"
        )
    # a PReLU that several blocks share is stored under one of its names in a .safetensors file
    for names in _shared_names(model):
        present = [name for name in names if name in state_dict]
        for name in names:
            if present and name not in state_dict:
                state_dict[name] = state_dict[present[0]]
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: the weights do not fit the network its model config describes: {err}"
        ) from None
    others = {k: v for k, v in hyper_parameters.items() if k not in ("model", "max_tile")}
    try:
        max_tile = check_max_tile(hyper_parameters.get("max_tile"))
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return StoredNetwork(model.to(device).eval(), dict(config), others, max_tile)


def save_safetensors(model: ELF, path: str | os.PathLike, max_tile: int | None = None) -> Path:
    """Writes `model`'s weights and config (and `max_tile`, see `StoredNetwork`, when given) to a
    `.safetensors` file that `load_model` reads.

    Unlike a pickle-based checkpoint, the file can hold nothing but tensors and a JSON string.
    A tensor that several modules share (each subnet's PReLU) is stored once.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"cannot write {path}: the file name must end in .safetensors")
    config = {"_target_": "derain.models.ELF", **elf_arguments(model)}
    metadata = {"model": json.dumps(config)}
    if check_max_tile(max_tile) is not None:
        metadata["max_tile"] = json.dumps(max_tile)
    with replacing(path) as partial:
        save_model(model, str(partial), metadata=metadata)
    return path


def save_pretrained(
    model: ELF,
    folder: str | os.PathLike,
    card: str,
    overwrite: bool = False,
    max_tile: int | None = None,
) -> Path:
    """Writes `model` as a model folder (`derain.inference.sources`): weights with their config
    (and `max_tile`, see `StoredNetwork`), `config.json` and the model card `card` (Markdown),
    the layout the Hugging Face Hub serves.

    The folder appears whole or not at all: it is written beside its destination and renamed,
    and an existing folder (with `overwrite`) is kept aside until the new one is in place.

    Raises:
        FileExistsError: `folder` exists and `overwrite` is False.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not overwrite:
        raise FileExistsError(
            f"{folder} already exists: choose another folder or pass overwrite=true"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    staging.chmod(new_mode(0o777))  # mkdtemp's folder is private; a model folder is not
    try:
        save_safetensors(model, staging / WEIGHTS_FILE, max_tile=max_tile)
        config = {"_target_": "derain.models.ELF", **elf_arguments(model)}
        (staging / CONFIG_FILE).write_text(
            json.dumps({"library_name": "derain", "model": config, "max_tile": max_tile}, indent=1)
            + "\n",
            encoding="utf-8",
        )
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        previous = folder.with_name(f".{folder.name}.previous") if folder.exists() else None
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
            folder.rename(previous)
        staging.rename(folder)
        if previous is not None:
            shutil.rmtree(previous)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def save_checkpoint(model: ELF, path: str | os.PathLike, max_tile: int | None = None) -> Path:
    """Writes `model` as a derain checkpoint (`.ckpt`, the layout `derain-train` writes and
    `load_model`, `derain-eval`, `derain-predict` and `derain-export` read): the network's state
    dict under `model.` and its config under `hyper_parameters["model"]` (`max_tile`, when
    given, under `hyper_parameters["max_tile"]`), nothing but tensors and plain containers. A
    `.safetensors` path writes that format instead."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return save_safetensors(model, path, max_tile)
    config = {"_target_": "derain.models.ELF", **elf_arguments(model)}
    checkpoint = {
        "state_dict": {
            STATE_DICT_PREFIX + key: value.detach().cpu()
            for key, value in model.state_dict().items()
        },
        "hyper_parameters": {"model": config},
    }
    if check_max_tile(max_tile) is not None:
        checkpoint["hyper_parameters"]["max_tile"] = max_tile
    with replacing(path) as partial:
        torch.save(checkpoint, partial)
    return path


def _shared_names(model: torch.nn.Module) -> list[list[str]]:
    """Groups of state-dict keys that name one tensor (a module used in several places)."""
    groups: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(value), []).append(key)
    return [names for names in groups.values() if len(names) > 1]


def elf_arguments(model: ELF) -> dict[str, Any]:
    """Constructor arguments that rebuild a network of `model`'s structure: `ELF(**arguments)`.

    Read from the modules themselves, so any ELF (preset or ablation) can be saved. Arguments
    the structure does not depend on (`heads` without attention, `mam_heads` without cross
    attention) keep their defaults; without attention, `depth` is the smallest depth giving the
    same number of CAB blocks. Raises ValueError when the rebuilt network's tensors differ.
    """
    defaults = {
        name: parameter.default for name, parameter in inspect.signature(ELF).parameters.items()
    }
    recovery = model.recovery_net
    blocks = list(recovery.stage.transformer.body)[:-1]  # the branch ends with a 3×3 conv
    attention = isinstance(blocks[0], TransformerBlock)
    cross = recovery.mam.cross if recovery.mam is not None else None
    arguments = {
        "width": recovery.embed_image.out_channels,
        "depth": len(blocks) if attention else _depth_for_cab_blocks(len(blocks)),
        "heads": blocks[0].attn.heads if attention else defaults["heads"],
        "mam_heads": cross.heads if cross is not None else defaults["mam_heads"],
        "attention": attention,
        "conv_branch": recovery.stage.conv is not None,
        "cross_attention": recovery.mam is None or cross is not None,
        "rain_prior": model.rain_net is not None,
        "head": model.head,
        "multiple": model.multiple,
    }
    rebuilt = {k: tuple(v.shape) for k, v in ELF(**arguments).state_dict().items()}
    if rebuilt != {k: tuple(v.shape) for k, v in model.state_dict().items()}:
        raise ValueError(
            f"this network is not ELF(**arguments) for any arguments (closest: {arguments}); "
            "save it with torch.save(model.state_dict(), ...) and rebuild it in code instead"
        )
    return arguments


def _depth_for_cab_blocks(blocks: int) -> int:
    """Inverse of TransformerBranch's `max(1, round(0.75 * depth))` CABs without attention."""
    return next(
        depth for depth in range(1, 4 * blocks + 2) if max(1, round(0.75 * depth)) == blocks
    )


def _read_lightning_checkpoint(path: Path) -> tuple[Any, dict[str, torch.Tensor], dict[str, Any]]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # the weights-only unpickler names the first class or function the file would import
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:
            raise CheckpointError(
                f"{path} is not a PyTorch checkpoint (the unpickler stopped at an unknown "
                "instruction); give ckpt_path= a Lightning .ckpt or a .safetensors file"
            ) from None
        raise CheckpointError(
            f"refusing to load {path}: it holds a pickled {found.group(1)} besides tensors and "
            "plain containers, and unpickling it could run code. Save the checkpoint with plain "
            "dicts (hyper_parameters['model'] a dict, not a DictConfig) or convert a trusted one "
            "with derain.inference.save_safetensors"
        ) from None
    except Exception as err:  # torch.load signals a non-checkpoint by many exception types
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint ({type(err).__name__}: {err}); give ckpt_path= "
            "a Lightning .ckpt or a .safetensors file"
        ) from None
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} has no 'state_dict': expected a Lightning checkpoint written by derain-train"
        )
    hyper_parameters = checkpoint.get("hyper_parameters")
    if not isinstance(hyper_parameters, Mapping) or "model" not in hyper_parameters:
        raise CheckpointError(
            f"{path} has no hyper_parameters['model'] (the network's config), so the network "
            "cannot be rebuilt: expected a checkpoint written by derain-train"
        )
    state_dict = {
        key[len(STATE_DICT_PREFIX) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(STATE_DICT_PREFIX)
    }
    return hyper_parameters["model"], state_dict, dict(hyper_parameters)


def _read_safetensors(path: Path) -> tuple[Any, dict[str, torch.Tensor], dict[str, Any]]:
    """(model config, state dict, {"max_tile": ...} when the metadata names one)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state_dict = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    if "model" not in metadata:
        raise CheckpointError(
            f"{path} has no 'model' entry in its metadata (the network's config as JSON); "
            "write the file with derain.inference.save_safetensors"
        )
    try:
        config = json.loads(metadata["model"])
        extra = {"max_tile": json.loads(metadata["max_tile"])} if "max_tile" in metadata else {}
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: metadata is not valid JSON: {err}") from None
    return config, state_dict, extra


def _elf_arguments_from_config(config: Any, path: Path) -> dict[str, Any]:
    """ELF's keyword arguments from a `{"_target_": ..., **arguments}` config, after checking it."""
    if not isinstance(config, Mapping):
        raise CheckpointError(
            f"{path}: the model config is a {type(config).__name__}, expected a mapping with "
            "_target_ and ELF's arguments"
        )
    target = config.get("_target_")
    if target not in ELF_TARGETS:
        raise CheckpointError(
            f"{path}: the model config names _target_={target!r}, but only "
            f"{' or '.join(sorted(ELF_TARGETS))} is built for inference (a checkpoint never "
            "chooses which code runs)"
        )
    arguments = {key: value for key, value in config.items() if key != "_target_"}
    # how the training run was sped up, not what the network is: the command that uses the
    # weights chooses (`derain.models.optimize`), and compiled blocks would slow CPU inference
    arguments.pop("compile", None)
    unknown = sorted(set(arguments) - _ELF_PARAMETERS)
    if unknown:
        raise CheckpointError(
            f"{path}: the model config has {unknown}, which are not arguments of ELF "
            f"(expected some of {sorted(_ELF_PARAMETERS)})"
        )
    return arguments

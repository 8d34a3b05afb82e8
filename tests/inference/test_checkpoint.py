"""Checkpoints load into an ELF for inference, and a checkpoint can never choose what code runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from elf_checkpoints import tiny_elf, write_lightning_checkpoint

from derain.inference import CheckpointError, elf_arguments, load_model, save_safetensors
from derain.models import ELF, PRESETS
from derain.training.module import DerainModule


@pytest.fixture(scope="module")
def tiny_model() -> ELF:
    return tiny_elf()


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory, tiny_model) -> Path:
    return write_lightning_checkpoint(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_training_checkpoint_loads_the_network_weights_in_eval_mode(checkpoint_path, tiny_model):
    model = load_model(checkpoint_path)
    assert isinstance(model, ELF) and not model.training
    assert _same_weights(model, tiny_model)  # the loss buffer beside it is ignored


def test_safetensors_round_trip_keeps_weights_and_configuration(tmp_path):
    torch.manual_seed(1)
    model = ELF.from_preset("elf_tiny", attention=False, head="rain", cross_attention=False)
    path = save_safetensors(model, tmp_path / "model.safetensors")
    loaded = load_model(path)
    assert _same_weights(loaded, model)
    assert elf_arguments(loaded) == elf_arguments(model)
    assert loaded.head == "rain"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_elf_arguments_recover_each_preset(name):
    arguments = elf_arguments(ELF.from_preset(name))
    assert {k: arguments[k] for k in PRESETS[name].arguments} == PRESETS[name].arguments


def test_a_pickled_object_is_refused_without_running_its_code(tmp_path, tiny_model):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    path = tmp_path / "evil.ckpt"
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in tiny_model.state_dict().items()},
        "hyper_parameters": {"model": {"_target_": "derain.models.ELF"}},
        "callbacks": Payload(),
    }
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.ckpt.*could run code"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("target", ["os.system", "torch.nn.Linear", None])
def test_a_foreign_target_is_refused(tmp_path, tiny_model, target):
    path = write_lightning_checkpoint(tiny_model, tmp_path / "foreign.ckpt", {"_target_": target})
    with pytest.raises(CheckpointError, match=r"foreign\.ckpt.*_target_=.*only derain.models.ELF"):
        load_model(path)


def test_a_foreign_target_in_safetensors_metadata_is_refused(tmp_path, tiny_model):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    tensors = {k: v.clone() for k, v in tiny_model.state_dict().items()}  # shared PReLUs copied
    save_file(tensors, str(path), metadata={"model": '{"_target_": "os.system"}'})
    with pytest.raises(CheckpointError, match="_target_='os.system'"):
        load_model(path)


def test_unknown_config_keys_are_named(tmp_path, tiny_model):
    config = {"_target_": "derain.models.ELF", **elf_arguments(tiny_model), "_partial_": True}
    path = write_lightning_checkpoint(tiny_model, tmp_path / "odd.ckpt", config)
    with pytest.raises(CheckpointError, match=r"\['_partial_'\], which are not arguments of ELF"):
        load_model(path)


def test_weights_that_do_not_fit_the_config_are_reported(tmp_path, tiny_model):
    config = {"_target_": "derain.models.ELF", **elf_arguments(tiny_model), "width": 32}
    path = write_lightning_checkpoint(tiny_model, tmp_path / "mismatch.ckpt", config)
    with pytest.raises(CheckpointError, match="mismatch.ckpt: the weights do not fit"):
        load_model(path)


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.ckpt is not a PyTorch checkpoint"):
        load_model(path)


def test_a_missing_file_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt_path="):
        load_model(tmp_path / "absent.ckpt")


def test_a_run_trained_with_compiled_blocks_loads_uncompiled_in_its_layout(tmp_path, tiny_model):
    arguments = elf_arguments(tiny_model)
    config = {"_target_": "derain.models.ELF", **arguments, "compile": True, "channels_last": False}
    path = write_lightning_checkpoint(tiny_model, tmp_path / "compiled.ckpt", config)
    for model in (load_model(path), DerainModule.from_checkpoint(path).model):
        # the training run's compile switch is not inherited: the loading command chooses
        assert not [m for m in model.modules() if getattr(m, "_compiled_call_impl", None)]
        assert model.channels_last is False
        assert _same_weights(model, tiny_model)


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_save_checkpoint_round_trips_and_a_failed_write_keeps_the_old_file(
    tmp_path, tiny_model, suffix, monkeypatch
):
    from derain.inference import checkpoint, save_checkpoint

    path = save_checkpoint(tiny_model, tmp_path / f"model{suffix}")
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(load_model(path)(x).image, tiny_model.eval()(x).image)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", fail)
    monkeypatch.setattr(checkpoint, "save_model", fail)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tiny_model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]

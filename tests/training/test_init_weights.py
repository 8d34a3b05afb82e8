"""init_weights=: a run that starts from a trained network's weights (fine-tuning)."""

from __future__ import annotations

import pytest
import torch

from derain.inference import load_model
from derain.inference.checkpoint import save_safetensors
from derain.training.tasks import build_module, load_initial_weights
from helpers import TINY, run_cli, run_dirs


def _module(compose_config, *overrides: str):
    return build_module(compose_config("train", [*TINY, *overrides]))


def _trained_looking(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """`model` with every weight replaced by seeded noise: unlike any fresh network."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model


def test_the_network_starts_from_the_given_weights(compose_config, tmp_path):
    source = _trained_looking(_module(compose_config).model, seed=3)
    path = save_safetensors(source, tmp_path / "start.safetensors")
    module = _module(compose_config)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    load_initial_weights(module, str(path))
    loaded = module.model.state_dict()
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded[name], tensor), name
    assert any(not torch.equal(before[k], loaded[k]) for k in before)


def test_another_shape_or_a_missing_file_fails_naming_the_setting(compose_config, tmp_path):
    other = _module(compose_config, "model.width=16").model
    path = save_safetensors(other, tmp_path / "wide.safetensors")
    module = _module(compose_config)
    with pytest.raises(ValueError, match=r"init_weights=.*another shape.*'width': \(8, 16\)"):
        load_initial_weights(module, str(path))
    with pytest.raises(ValueError, match=r"init_weights=.*nothing\.ckpt"):
        load_initial_weights(module, str(tmp_path / "nothing.ckpt"))


def test_a_run_trains_on_from_the_given_weights(compose_config, tmp_path):
    source = _trained_looking(_module(compose_config).model, seed=5)
    path = save_safetensors(source, tmp_path / "start.safetensors")
    # a zero learning rate keeps the weights where they started: the run's checkpoint holds them
    run_cli("derain-train", *TINY, f"init_weights={path}", "optimizer.lr=0", cwd=tmp_path)
    (run,) = run_dirs(tmp_path)
    trained = load_model(run / "checkpoints" / "last.ckpt").state_dict()
    for name, tensor in source.state_dict().items():
        assert torch.equal(trained[name], tensor), name

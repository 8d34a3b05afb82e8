"""`ExportableELF`, the graph that export traces: the network's output for any size ≥ 9×9."""

from __future__ import annotations

import pytest
import torch
from elf_checkpoints import tiny_elf

from derain.inference import export_onnx
from derain.inference.export import ExportableELF, export_difference
from derain.models import ELF
from derain.models.blocks import LayerNorm2d


@pytest.fixture(scope="module")
def tiny_model() -> ELF:
    return tiny_elf()


@pytest.mark.parametrize("shape", [(1, 9, 9), (2, 37, 61), (1, 48, 32)])
def test_the_wrapper_returns_the_networks_image_at_any_size(tiny_model, shape):
    x = torch.rand(shape[0], 3, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(ExportableELF(tiny_model)(x), tiny_model(x).image)


def test_wrapping_leaves_the_network_itself_unchanged():
    model = tiny_elf().train()  # the wrapper puts its own copy in eval mode, not this one
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(1))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [(name, type(m)) for name, m in model.named_modules()]
    mode = [m.training for m in model.modules()]
    with torch.inference_mode():
        before = model(x).image
    ExportableELF(model)(x)  # built and run: the export graph's changes live in its own copy
    assert [(name, type(m)) for name, m in model.named_modules()] == modules
    assert any(t is LayerNorm2d for _, t in modules)
    assert [m.training for m in model.modules()] == mode
    after = model.state_dict()
    assert list(after) == list(weights)
    for key, value in weights.items():
        assert torch.equal(after[key], value), key
    with torch.inference_mode():
        torch.testing.assert_close(model(x).image, before, rtol=0, atol=0)


@pytest.mark.slow
def test_the_torch_export_based_onnx_exporter_matches_pytorch_too(tiny_model, tmp_path):
    path = export_onnx(tiny_model, tmp_path / "elf.onnx", dynamo=True)
    assert export_difference(path, tiny_model, sizes=((37, 61), (40, 52))) < 1e-4

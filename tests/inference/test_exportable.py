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


def test_wrapping_leaves_the_network_itself_unchanged(tiny_model):
    ExportableELF(tiny_model)
    assert any(isinstance(m, LayerNorm2d) for m in tiny_model.modules())


@pytest.mark.slow
def test_the_torch_export_based_onnx_exporter_matches_pytorch_too(tiny_model, tmp_path):
    path = export_onnx(tiny_model, tmp_path / "elf.onnx", dynamo=True)
    assert export_difference(path, tiny_model, sizes=((37, 61), (40, 52))) < 1e-4

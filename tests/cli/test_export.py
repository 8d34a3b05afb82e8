"""`derain-export`: ONNX and TorchScript files that match PyTorch on images of any size."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from rich.console import Console

from derain.inference import CheckpointError, save_safetensors
from derain.inference.export import run
from derain.models import ELF
from helpers import run_cli

# neither side a multiple of 16, and two different sizes: the padding must follow the input
SIZES = [(1, 37, 61), (2, 40, 52)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """elf_tiny exported by the command line as ONNX (to `out`) and TorchScript (default path)."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny").eval()
    checkpoint = save_safetensors(model, root / "tiny.safetensors")
    onnx_run = run_cli(
        "derain-export",
        f"ckpt_path={checkpoint}",
        "format=onnx",
        "output=deploy/elf.onnx",
        cwd=root,
    )
    script_run = run_cli("derain-export", f"ckpt_path={checkpoint}", "format=torchscript", cwd=root)
    return model, root, onnx_run, script_run


def _reference(model: ELF, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(x).image.numpy()


@pytest.mark.parametrize("shape", SIZES)
def test_the_onnx_file_matches_pytorch_at_any_size(exported, shape):
    model, root, *_ = exported
    session = onnxruntime.InferenceSession(str(root / "deploy" / "elf.onnx"))
    x = torch.rand(shape[0], 3, *shape[1:], generator=torch.Generator().manual_seed(1))
    (restored,) = session.run(None, {"rainy": x.numpy()})
    assert restored.shape == (shape[0], 3, *shape[1:])
    np.testing.assert_allclose(restored, _reference(model, x), atol=1e-4, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("shape", SIZES)
def test_the_torchscript_file_matches_pytorch_at_any_size(exported, shape):
    model, root, *_ = exported
    scripted = torch.jit.load(str(root / "tiny.torchscript.pt"))
    x = torch.rand(shape[0], 3, *shape[1:], generator=torch.Generator().manual_seed(2))
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        restored = scripted(x).numpy()
    np.testing.assert_allclose(restored, _reference(model, x), atol=1e-4, rtol=0)


def test_each_export_reports_its_own_check_against_pytorch(exported):
    *_, onnx_run, script_run = exported
    assert "max |onnx − PyTorch|" in onnx_run.stdout and "(ok," in onnx_run.stdout
    assert "max |torchscript − PyTorch|" in script_run.stdout and "(ok," in script_run.stdout


def test_the_run_writes_only_the_exported_files(exported):
    _, root, *_ = exported
    written = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert written == ["deploy/elf.onnx", "tiny.safetensors", "tiny.torchscript.pt"]


def test_an_unknown_format_lists_the_choices(compose_config, tmp_path):
    cfg = compose_config("export", [f"ckpt_path={tmp_path / 'x.ckpt'}", "format=tflite"])
    with pytest.raises(ValueError, match="format=tflite is not one of onnx, torchscript"):
        run(cfg, Console())


def test_without_a_checkpoint_the_bundled_model_is_exported_here(
    compose_config, tmp_path, monkeypatch
):
    from derain.inference import save_pretrained, sources

    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny").eval()
    monkeypatch.setattr(sources, "WEIGHTS_DIR", tmp_path / "weights")
    save_pretrained(model, tmp_path / "weights" / "default", card="# default\n")
    monkeypatch.chdir(tmp_path)
    out = run(compose_config("export", ["format=torchscript", "verify=false"]), Console()).output
    assert out == tmp_path.joinpath("default.torchscript.pt").relative_to(tmp_path)
    scripted = torch.jit.load(str(tmp_path / out))
    x = torch.rand(1, 3, 37, 61)
    with torch.inference_mode():
        exported = scripted(x).numpy()
    np.testing.assert_allclose(exported, _reference(model, x), atol=1e-4)


def test_a_checkpoint_naming_other_code_is_refused(compose_config, tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"model": {"_target_": "os.system"}}}, foreign
    )
    cfg = compose_config("export", [f"ckpt_path={foreign}"])
    with pytest.raises(CheckpointError, match="_target_='os.system'"):
        run(cfg, Console())
    assert list(tmp_path.iterdir()) == [foreign]

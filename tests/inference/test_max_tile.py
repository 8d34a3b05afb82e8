"""`max_tile`: a model's largest one-pass input side, kept with its weights and honoured by
`Restorer`, `derain.load`, derain-convert and the LightningModule's evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from elf_checkpoints import tiny_elf, write_lightning_checkpoint

import derain
from derain.inference import (
    CheckpointError,
    Restorer,
    load_network,
    save_checkpoint,
    save_pretrained,
    tiled_apply,
)
from derain.training.module import DerainModule
from helpers import run_cli


@pytest.fixture(scope="module")
def model():
    return tiny_elf(3)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(1, 3, 176, 208, generator=torch.Generator().manual_seed(1))


def test_images_larger_than_max_tile_go_in_tiles_of_at_most_that_side(model):
    restorer = Restorer(model, device="cpu", max_tile=128)
    assert restorer.plan(128, 96).tiles == 1
    plan = restorer.plan(300, 200)
    assert plan.tile == 128 and plan.tiles == 3 * 2
    assert max(plan.tile_shape) <= 128
    # a forced tile wins over max_tile; without max_tile the image goes whole
    assert Restorer(model, device="cpu", max_tile=128, tile=256).plan(300, 200).tile == 256
    assert Restorer(model, device="cpu").plan(300, 200).tiles == 1


def test_memory_still_shrinks_tiles_below_max_tile(model):
    plan = Restorer(model, device="cpu", max_tile=512, max_memory="30MB").plan(512, 512)
    assert plan.tile < 512 and plan.estimated_bytes <= plan.budget_bytes


def test_the_tiled_result_is_the_blend_of_max_tile_tiles(model, image):
    restored, _ = Restorer(model, device="cpu", max_tile=96).restore_batch(image)
    with torch.inference_mode():
        expected = tiled_apply(lambda t: model(t).image, image, 96, 32).clamp(0, 1)
        whole = model(image).image.clamp(0, 1)
    torch.testing.assert_close(restored, expected)
    assert not torch.allclose(restored, whole, atol=1e-4)


@pytest.mark.parametrize("max_tile", [100, 64, 0, -16])
def test_a_bad_max_tile_is_refused_with_the_setting_named(model, max_tile):
    with pytest.raises(ValueError, match=rf"max_tile={max_tile}"):
        Restorer(model, device="cpu", max_tile=max_tile)


@pytest.mark.parametrize("name", ["model.ckpt", "model.safetensors", "folder"])
def test_max_tile_is_kept_with_the_weights(model, tmp_path, name):
    path = tmp_path / name
    if name == "folder":
        save_pretrained(model, path, card="# m\n", max_tile=192)
        assert json.loads((path / "config.json").read_text())["max_tile"] == 192
    else:
        save_checkpoint(model, path, max_tile=192)
    assert load_network(path).max_tile == 192
    assert derain.load(path, device="cpu").max_tile == 192
    assert derain.load(path, device="cpu", max_tile=None).max_tile is None
    assert derain.load(path, device="cpu", max_tile=256).max_tile == 256
    save_checkpoint(model, tmp_path / "plain.ckpt")
    assert derain.load(tmp_path / "plain.ckpt", device="cpu").max_tile is None


def test_a_checkpoint_with_a_bad_max_tile_is_refused_by_name(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "m.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["max_tile"] = 100
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"m\.ckpt: max_tile=100 must be"):
        load_network(path)


def test_convert_keeps_replaces_or_lifts_max_tile(compose_config, model, tmp_path):
    from rich.console import Console

    from derain.inference.convert import run

    source = save_checkpoint(model, tmp_path / "src.ckpt", max_tile=192)
    for option, expected in ((None, 192), ("max_tile=256", 256), ("max_tile=null", None)):
        out = tmp_path / f"out{expected}"
        overrides = [f"ckpt_path={source}", f"output={out}"] + ([option] if option else [])
        run(compose_config("convert", overrides), Console(quiet=True))
        assert load_network(out).max_tile == expected


def test_evaluation_tiles_like_the_restorer(model, image, tmp_path):
    path = write_lightning_checkpoint(model, tmp_path / "m.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["max_tile"] = 96
    torch.save(checkpoint, path)
    module = DerainModule.from_checkpoint(path).eval()
    assert module.hparams.max_tile == 96
    with torch.inference_mode():
        out, restored = module._restore(image)
    assert out is None  # tiled: no single network output
    expected, _ = derain.load(path, device="cpu").restore_batch(image)
    torch.testing.assert_close(restored, expected)
    whole = DerainModule.from_checkpoint(path, max_tile=None).eval()
    with torch.inference_mode():
        _, whole_restored = whole._restore(image)
    assert not torch.allclose(whole_restored, expected, atol=1e-4)
    with pytest.raises(ValueError, match="module.max_tile=100"):
        DerainModule.from_checkpoint(path, max_tile=100)


def test_eval_names_a_bad_max_tile(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "m.ckpt")
    proc = run_cli("derain-eval", f"ckpt_path={path}", "max_tile=100", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "derain-eval: error: max_tile=100 must be" in proc.stderr

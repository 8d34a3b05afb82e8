"""Naming a model: bundled short names, model folders (the Hub's layout), derain and authors'
checkpoints; and writing a model folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from elf_checkpoints import tiny_elf, write_lightning_checkpoint
from safetensors.torch import load_file

from derain.inference import CheckpointError, checkpoint, load_model, save_pretrained, sources
from derain.inference.sources import resolve_model

AUTHORS = Path(__file__).parents[1] / "models" / "fixtures" / "authors_elf"


def _same_network(a, b) -> bool:
    image = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a(image).image, b(image).image)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(sources, "WEIGHTS_DIR", folder)
    return folder


def test_model_folder_holds_weights_config_and_card(tmp_path):
    model = tiny_elf(1)
    folder = save_pretrained(model, tmp_path / "my-model", card="# my model\n")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["_target_"] == "derain.models.ELF"
    assert config["model"]["width"] == model.recovery_net.embed_image.out_channels
    assert (folder / "README.md").read_text() == "# my model\n"
    assert _same_network(load_model(folder), model)
    # as readable as any new file (temporary files and folders start private)
    mask = os.umask(0)
    os.umask(mask)
    for path in (folder, *folder.iterdir()):
        assert path.stat().st_mode & 0o444 & ~mask == 0o444 & ~mask, path


def test_model_folder_is_not_overwritten_unless_asked(tmp_path):
    folder = save_pretrained(tiny_elf(1), tmp_path / "m", card="first")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_pretrained(tiny_elf(2), folder, card="second")
    assert (folder / "README.md").read_text() == "first"
    save_pretrained(tiny_elf(2), folder, card="second", overwrite=True)
    assert (folder / "README.md").read_text() == "second"
    assert _same_network(load_model(folder), tiny_elf(2))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging or old folder left


def test_failed_model_folder_write_keeps_the_old_folder(tmp_path, monkeypatch):
    folder = save_pretrained(tiny_elf(1), tmp_path / "m", card="first")

    def broken(model, path, max_tile=None):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_safetensors", broken)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(tiny_elf(2), folder, card="second", overwrite=True)
    assert (folder / "README.md").read_text() == "first"
    assert _same_network(load_model(folder), tiny_elf(1))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_bundled_short_name_and_the_default_load_the_bundled_folder(weights_dir):
    save_pretrained(tiny_elf(3), weights_dir / "default", card="default")
    save_pretrained(tiny_elf(4), weights_dir / "other", card="other")
    assert sources.bundled_models().keys() == {"default", "other"}
    assert resolve_model() == weights_dir / "default" / "model.safetensors"
    assert _same_network(load_model(), tiny_elf(3))
    assert _same_network(load_model("other"), tiny_elf(4))


def test_an_unknown_name_lists_the_bundled_models(weights_dir):
    save_pretrained(tiny_elf(3), weights_dir / "default", card="default")
    with pytest.raises(FileNotFoundError, match=r"no model 'nope'.*\(default\)"):
        resolve_model("nope")


def test_a_folder_without_weights_says_what_it_should_hold(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        resolve_model(tmp_path / "empty")


def test_a_derain_checkpoint_loads_by_path(tmp_path):
    model = tiny_elf(5)
    path = write_lightning_checkpoint(model, tmp_path / "last.ckpt")
    assert _same_network(load_model(path), model)


def test_an_authors_checkpoint_loads_through_from_authors(tmp_path):
    tensors = load_file(AUTHORS / "authors_elf.safetensors")
    tag = json.loads((AUTHORS / "authors_elf.json").read_text())["cases"][0]["tag"]
    prefix = f"{tag}/state_dict/"
    state = {f"module.{k[len(prefix) :]}": v for k, v in tensors.items() if k.startswith(prefix)}
    path = tmp_path / "model_best.pth"
    torch.save({"epoch": 1, "state_dict": state, "optimizer": {}}, path)
    model = load_model(path)
    size = next(k for k in tensors if k.startswith(f"{tag}/input_"))[len(f"{tag}/input_") :]
    with torch.no_grad():
        out = model(tensors[f"{tag}/input_{size}"]).image
    torch.testing.assert_close(out, tensors[f"{tag}/image_{size}"], atol=1e-5, rtol=0)


def test_a_file_that_is_neither_gives_both_reasons(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"something": torch.zeros(2)}, path)
    with pytest.raises(
        CheckpointError, match="neither a derain checkpoint.*nor one of the authors"
    ):
        load_model(path)


def test_a_missing_checkpoint_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt does not exist"):
        load_model(tmp_path / "nowhere.ckpt")


def test_convert_writes_a_model_folder_with_the_given_card(compose_config, tmp_path):
    from rich.console import Console

    from derain.inference.convert import run

    model = tiny_elf(6)
    ckpt = write_lightning_checkpoint(model, tmp_path / "last.ckpt")
    card = tmp_path / "CARD.md"
    card.write_text("---\nlibrary_name: derain\n---\n# mine\n")
    out = tmp_path / "mine"
    cfg = compose_config("convert", [f"ckpt_path={ckpt}", f"output={out}", f"card={card}"])
    assert run(cfg, Console()).output == out
    assert (out / "README.md").read_text() == card.read_text()
    assert _same_network(load_model(out), model)
    with pytest.raises(ValueError, match="exists"):
        run(cfg, Console())


def test_convert_needs_exactly_one_source(compose_config, tmp_path):
    from rich.console import Console

    from derain.inference.convert import run

    with pytest.raises(ValueError, match="one of authors= .* or ckpt_path="):
        run(compose_config("convert", [f"output={tmp_path / 'x.ckpt'}"]), Console())


def test_without_a_bundled_model_the_error_says_to_give_one(weights_dir):
    with pytest.raises(FileNotFoundError, match=r"no model 'default'.*none in this installation"):
        load_model()

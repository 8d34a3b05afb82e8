"""Every command's --help says what it does, one line per key it takes, and only its groups."""

from __future__ import annotations

import pytest
import yaml

from derain.paths import config_dir
from derain.runtime.help import command_help
from helpers import run_cli

COMMANDS = ["convert", "eval", "export", "predict", "profile", "score", "train"]


def _keys(name: str) -> set[str]:
    """Top-level keys of the command's config and of the files it merges in (`@_here_`)."""
    config = yaml.safe_load((config_dir() / f"{name}.yaml").read_text())
    keys = set(config) - {"defaults", "hydra"}
    for entry in config.get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                if group.endswith("@_here_"):
                    path = config_dir() / group.removesuffix("@_here_") / f"{option}.yaml"
                    keys |= set(yaml.safe_load(path.read_text()))
    return keys


@pytest.mark.parametrize("name", COMMANDS)
def test_help_starts_with_what_the_command_does_and_lists_every_key_with_its_meaning(name):
    text = command_help(name).replace("$$", "$")
    assert text.startswith(f"derain-{name}: ")
    settings = text.split("== Settings")[1].split("\n\n")[0].splitlines()[1:]
    listed = {line.split()[0].split("=")[0]: line for line in settings}
    assert set(listed) == _keys(name)
    undocumented = [key for key, line in listed.items() if len(line.split(None, 1)) < 2]
    assert not undocumented


def test_help_lists_only_the_config_groups_the_command_uses():
    assert "== Config groups" not in command_help("score")
    groups = command_help("eval").split("== Config groups")[1].split("\n\n")[0]
    assert "data " in groups and "trainer " in groups
    assert "optimizer" not in groups and "model" not in groups


def test_the_installed_command_prints_it(tmp_path):
    out = run_cli("derain-score", "--help", cwd=tmp_path).stdout
    assert out.startswith("derain-score: ")
    assert "rounded_y=true" in out and "trainer" not in out


def test_commands_that_take_a_model_list_the_bundled_ones(tmp_path, monkeypatch):
    from derain.inference import sources

    assert "== Bundled models" not in command_help("score")
    folder = tmp_path / "weights" / "rainy-days"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(sources, "WEIGHTS_DIR", tmp_path / "weights")
    for name in ("predict", "eval", "demo", "export", "convert"):
        models = command_help(name).split("== Bundled models")[1].split("\n\n")[0]
        assert f"rainy-days  model card: {folder / 'README.md'}" in models, name
    monkeypatch.setattr(sources, "WEIGHTS_DIR", tmp_path / "none")
    assert "none in this installation" in command_help("predict")

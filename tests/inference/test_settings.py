"""`InferenceSettings`: one definition of how a network runs, its defaults equal to the config
group's, and a clear error for every bad or renamed value."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from derain.inference import InferenceSettings
from derain.paths import config_dir

COMMANDS = ["predict", "eval", "demo", "export", "convert"]


def _yaml(path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_config_groups_defaults_are_the_settings_defaults():
    group = _yaml(config_dir() / "inference" / "default.yaml")
    defaults = dataclasses.asdict(InferenceSettings())
    assert group == {key: defaults[key] for key in group}
    # predict's tiling keys, kept beside the group (only predict forces tiles)
    predict = _yaml(config_dir() / "predict.yaml")
    assert (predict["tile"], predict["overlap"]) == (defaults["tile"], defaults["overlap"])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_runs_a_network_composes_the_group_and_repeats_no_default(
    command, compose_config
):
    config = _yaml(config_dir() / f"{command}.yaml")
    assert "inference@_here_" in str(config["defaults"])
    group = _yaml(config_dir() / "inference" / "default.yaml")
    repeated = sorted(set(config) & set(group))
    # derain-demo's page starts with a memory budget of its own
    assert repeated == (["max_memory"] if command == "demo" else [])
    settings = InferenceSettings.from_config(compose_config(command, ["device=cpu"]))
    assert settings.device == "cpu"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"precision": "int8"}, "precision='int8' is not one of 32-true, bf16-mixed, 16-mixed"),
        ({"max_tile": 100}, "max_tile=100 must be null or a multiple of 16"),
        ({"max_tile": "auto"}, "max_tile='auto': expected model, null or a multiple of 16"),
        ({"max_memory": "lots"}, "max_memory='lots' is not a memory size"),
        ({"self_ensemble": "twice"}, "self_ensemble=twice is not one of off, flips, d4"),
        ({"overlap": -1}, "overlap=-1 must be 0 or more"),
        ({"tile": "big"}, "tile='big' must be null or a number of pixels"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(setting, message):
    with pytest.raises(ValueError, match=message):
        InferenceSettings(**setting)


@pytest.mark.parametrize(
    ("old", "new"), [("fp32", "32-true"), ("bf16", "bf16-mixed"), ("fp16", "16-mixed")]
)
def test_an_earlier_precision_name_says_the_one_to_write(old, new, compose_config):
    with pytest.raises(
        ValueError, match=f"precision={old} is an earlier name: write precision={new}"
    ):
        InferenceSettings.from_config(compose_config("predict", [f"precision={old}"]))


def test_a_setting_a_command_does_not_use_is_refused_not_ignored(compose_config):
    from derain.inference.export import run

    cfg = compose_config("export", ["self_ensemble=flips"])
    with pytest.raises(ValueError, match="self_ensemble=flips does not apply to derain-export"):
        run(cfg)


def test_derain_load_and_the_restorer_read_the_same_settings(tmp_path):
    import derain
    from derain.inference import save_safetensors
    from derain.models import ELF

    path = save_safetensors(ELF.from_preset("elf_tiny"), tmp_path / "m.safetensors")
    settings = InferenceSettings(ckpt_path=str(path), device="cpu", max_tile=128, tile=96)
    restorer = derain.load(settings=settings, self_ensemble="flips")
    assert restorer.settings == settings.replace(self_ensemble="flips")
    assert (restorer.max_tile, restorer.tile, restorer.device.type) == (128, 96, "cpu")

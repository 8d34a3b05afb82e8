"""The Hydra model configs and the Python presets describe the same networks."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from derain.models import ELF, PRESETS
from derain.paths import config_dir


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_model_config_builds_the_preset(compose_config, name):
    cfg = compose_config("profile", [f"model={name}"])
    model = instantiate(cfg.model)
    assert isinstance(model, ELF)
    default = ELF.from_preset(name)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in default.state_dict().items()
    }
    for key, value in PRESETS[name].arguments.items():
        assert cfg.model[key] == value


def test_every_preset_has_a_config_and_vice_versa():
    files = {p.stem for p in (config_dir() / "model").glob("*.yaml")}
    assert files == set(PRESETS)


ABLATIONS = {
    "no_attention": ("attention", False),
    "no_conv_branch": ("conv_branch", False),
    "no_mam": ("cross_attention", False),
    "no_rain_prior": ("rain_prior", False),
    "rain_head": ("head", "rain"),
    "background_head": ("head", "background"),
}


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_ablation_config_applies_on_top_of_any_preset(compose_config, ablation):
    key, value = ABLATIONS[ablation]
    cfg = compose_config("profile", ["model=elf_tiny", f"model/ablation={ablation}"])
    assert cfg.model[key] == value
    assert cfg.model.width == PRESETS["elf_tiny"].arguments["width"]
    changed = {
        k
        for k in cfg.model
        if cfg.model[k] != compose_config("profile", ["model=elf_tiny"]).model[k]
    }
    assert changed == {key}
    heads = {"rain_head": "rain", "background_head": "background"}
    assert instantiate(cfg.model).head == heads.get(ablation, "refined_rain")


def test_every_ablation_file_is_covered():
    files = {p.stem for p in (config_dir() / "model" / "ablation").glob("*.yaml")}
    assert files == set(ABLATIONS) | {"full"}

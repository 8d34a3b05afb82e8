"""derain.studies: ablation variants composed from conf/, one budget for all, and the look inside a network."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from derain.models import ELF
from derain.paths import config_dir
from derain.studies.ablation import AblationStudy, variant_names
from derain.studies.budgets import SCALES
from derain.studies.inspection import (
    attention_maps,
    plot_attention,
    plot_layers,
    restoration_layers,
)

# what each file of conf/model/ablation/ must switch, relative to the full network
INTENDED = {
    "full": {},
    "no_attention": {"attention": False},
    "no_conv_branch": {"conv_branch": False},
    "no_mam": {"cross_attention": False},
    "no_rain_prior": {"rain_prior": False},
    "rain_head": {"head": "rain"},
    "background_head": {"head": "background"},
}


def test_variants_are_the_ablation_configs_with_the_full_network_first():
    names = variant_names()
    assert names[0] == "full"
    assert set(names) == {p.stem for p in (config_dir() / "model" / "ablation").glob("*.yaml")}
    assert set(names) == set(INTENDED)


@pytest.fixture(scope="module", params=sorted(SCALES))
def study(request, tmp_path_factory):
    """A study of every variant at each scale (configs composed once per module)."""
    return AblationStudy(out_dir=tmp_path_factory.mktemp("study"), scale=request.param, seed=7)


def test_each_variant_flips_exactly_its_switch(study):
    assert {v: study.switches(v) for v in study.variants} == INTENDED


def test_variants_share_budget_data_and_seed(study):
    shared = []
    for variant in study.variants:
        cfg = OmegaConf.to_container(study.compose(variant), resolve=False)
        assert cfg["seed"] == 7
        assert cfg["paths"]["output_dir"] == str(study.out_dir / variant)
        # everything but the network, the run's folder and its name must be the same
        for key in ("model", "paths", "run_name", "tags"):
            cfg.pop(key)
        shared.append(cfg)
    assert all(cfg == shared[0] for cfg in shared[1:])
    # the scale's budget, whatever the train config's own default
    (budget,) = [o for o in study.scale.overrides if o.startswith("trainer.max_steps=")]
    assert shared[0]["trainer"]["max_steps"] == int(budget.split("=")[1])


def test_full_scale_budget_is_a_step_count_not_a_time_limit(tmp_path):
    cfg = AblationStudy(out_dir=tmp_path, scale="full").compose("no_mam")
    # a time guard would train slower variants (or those on a busy machine) for fewer steps
    assert cfg.trainer.max_time is None
    assert cfg.trainer.max_steps >= 400
    assert cfg.model.width == 24  # elf_tiny, the CPU demo's network
    assert cfg.loss.ssim_weight == 0.15  # the paper's loss, not the demo's
    # in-process training (notebooks) on one process, with the demo's batch of 8 in all
    assert cfg.trainer.devices == 1 and cfg.trainer.get("strategy", "auto") == "auto"
    assert cfg.data.batch_size == 8
    # the recipe the README's table was measured with: all 8 flips/rotations, one test pass
    assert cfg.data.augment == "d4" and cfg.module.self_ensemble is None


def test_unknown_variant_and_scale_name_the_choices(tmp_path):
    with pytest.raises(ValueError, match="no_mam"):
        AblationStudy(out_dir=tmp_path, variants=["no_such"])
    with pytest.raises(ValueError, match="smoke"):
        AblationStudy(out_dir=tmp_path, scale="huge")


def test_wandb_runs_of_a_study_share_a_group(tmp_path):
    study = AblationStudy(out_dir=tmp_path / "study", variants=["full"], logger="wandb")
    assert study.compose("full").logger.wandb.group == "ablation-study"


def _tiny_elf(**switches):
    torch.manual_seed(0)
    return ELF(width=8, depth=1, heads=2, mam_heads=4, **switches).eval()


def test_attention_maps_are_the_matrix_the_mam_applies():
    model = _tiny_elf()
    cross = model.recovery_net.mam.cross
    seen = {}
    cross.register_forward_hook(lambda m, args, out: seen.update(args=args, out=out))
    x = torch.rand(2, 3, 32, 48)
    maps = attention_maps(model, {"rainy": x})
    q_src, k_src, v_src = seen["args"]
    assert maps.weights.shape == (2, 4, 2, 2)  # batch × heads × (8/4)²
    assert torch.allclose(maps.weights.sum(-1), torch.ones(2, 4, 2))
    assert torch.equal(maps.weights, cross.attention(q_src, k_src)[0])
    # applying the captured matrix to the block's values reproduces the block's output
    v = cross.to_v(cross.norm_v(v_src))
    b, c, h, w = v.shape
    attended = (maps.weights @ v.reshape(b, 4, c // 4, h * w)).reshape(b, c, h, w)
    x_mid = v_src + cross.project(attended)
    assert torch.allclose(x_mid + cross.ffn(cross.norm_ffn(x_mid)), seen["out"], atol=1e-5)
    assert maps.keys.shape == (2, 8, 16, 24) and maps.received().shape == (2, 8)
    assert torch.allclose(maps.received().sum(-1), torch.full((2,), 8.0))
    assert len(cross._forward_hooks) == 1  # attention_maps removed its own hook
    assert len(plot_attention(maps, top=3).axes) >= 4 + 3


@pytest.mark.parametrize(
    ("switches", "setting"),
    [({"rain_prior": False}, "rain_prior=false"), ({"cross_attention": False}, "no_mam")],
)
def test_attention_maps_refuse_networks_without_cross_attention(switches, setting):
    with pytest.raises(ValueError, match=setting):
        attention_maps(_tiny_elf(**switches), torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize("head", ["refined_rain", "background", "rain"])
def test_restoration_layers_split_the_rainy_image(head):
    model = _tiny_elf(head=head)
    clean = torch.rand(1, 3, 30, 40)
    rainy = (clean + 0.2 * torch.rand_like(clean)).clamp(0, 1)
    layers = restoration_layers(model, {"rainy": rainy, "clean": clean, "name": ["x.png"]})
    assert layers.rain_half.shape == (3, 15, 20) and layers.rain.shape == (3, 30, 40)
    assert layers.error.shape == (30, 40)
    assert torch.allclose(layers.true_rain, rainy[0] - clean[0])
    if head == "background":  # the implied rain: whatever the network removed
        assert torch.allclose(layers.rain, rainy[0] - layers.restored)
    assert math.isfinite(layers.psnr) and layers.input_psnr > 10
    assert plot_layers(layers)._suptitle.get_text() == "x.png"

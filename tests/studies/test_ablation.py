"""derain.studies: ablation variants composed from conf/, one budget for all, the table, and the look inside a network."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from derain.models import ELF
from derain.paths import config_dir
from derain.studies.ablation import (
    AblationStudy,
    AblationTable,
    VariantResult,
    log_to_wandb,
    plot_psnr_bars,
    plot_psnr_vs_gmacs,
    variant_names,
    wandb_table,
)
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
    assert shared[0]["trainer"]["max_steps"] > 0


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


def _row(variant, light, heavy, gmacs=1.0, switches=None):
    test = {
        "synthetic_light": {"psnr": light, "ssim": light / 40, "input_psnr": 25.0,
                            "input_ssim": 0.8, "images": 8},
        "synthetic_heavy": {"psnr": heavy, "ssim": heavy / 40, "input_psnr": 11.0,
                            "input_ssim": 0.4, "images": 8},
    }  # fmt: skip
    return VariantResult(variant, f"{variant} description", switches or {}, 1000, gmacs, 5.0,
                         test, steps=10, train_seconds=1.0)  # fmt: skip


def _table():
    return AblationTable(
        [
            _row("full", 30.0, 20.0, 2.0),
            _row("no_mam", 29.0, 18.0, 1.9, {"cross_attention": False}),
            _row("no_rain_prior", 31.0, 20.0, 0.8, {"rain_prior": False}),
        ],
        scale="smoke",
        profile_size=64,
    )


def test_delta_is_the_mean_over_sets_minus_the_full_network():
    records = {r["variant"]: r for r in _table().records()}
    assert records["full"]["delta_psnr"] == 0.0
    assert records["no_mam"]["psnr_mean"] == pytest.approx(23.5)
    assert records["no_mam"]["delta_psnr"] == pytest.approx(-1.5)
    assert records["no_mam"]["delta_psnr_synthetic_heavy"] == pytest.approx(-2.0)
    assert records["no_rain_prior"]["delta_psnr"] == pytest.approx(0.5)
    assert records["no_mam"]["delta_ssim"] == pytest.approx(-1.5 / 40)
    assert records["no_mam"]["change"] == "cross_attention=false"


def test_without_the_full_network_there_is_no_delta():
    table = _table()
    table.rows = table.rows[1:]
    assert all(r["delta_psnr"] is None for r in table.records())
    assert "| – | – |" in table.to_markdown()


def test_written_table_holds_every_variant(tmp_path):
    paths = _table().write(tmp_path)
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["full", "no_mam", "no_rain_prior"]
    assert float(rows[1]["delta_psnr"]) == pytest.approx(-1.5)
    markdown = paths["markdown"].read_text()
    assert "| no_mam | cross_attention=false |" in markdown and "| -1.50 |" in markdown
    assert "GMACs @64²" in markdown and "Rainy input" in markdown
    stored = json.loads(paths["json"].read_text())
    assert stored["rows"][1]["switches"] == {"cross_attention": False}
    columns, data = wandb_table(_table())
    assert len(data) == 3 and all(len(row) == len(columns) for row in data)


def test_wandb_runs_of_a_study_share_a_group_and_a_summary_run_holds_the_table(
    tmp_path, monkeypatch
):
    study = AblationStudy(out_dir=tmp_path / "study", variants=["full"], logger="wandb")
    assert study.compose("full").logger.wandb.group == "ablation-study"
    monkeypatch.setenv("WANDB_SILENT", "true")
    table = _table()
    paths = table.write(tmp_path)
    paths["psnr_bars"] = tmp_path / "bars.png"
    plot_psnr_bars(table).savefig(paths["psnr_bars"])
    wandb_cfg = OmegaConf.create({"project": "derain", "group": "ablation-test", "offline": True})
    log_to_wandb(table, paths, wandb_cfg, tmp_path)
    (run,) = tmp_path.glob("wandb/offline-run-*")
    (stored,) = run.glob("files/media/table/ablation/table_*.table.json")
    assert len(json.loads(stored.read_text())["data"]) == 3
    assert list(run.glob("files/media/images/ablation/psnr_bars_*.png"))


def test_findings_compare_quality_and_cost_to_the_full_network():
    findings = _table().findings()
    assert len(findings) == 2
    assert findings[1].startswith("no_rain_prior (rain_prior=false): +0.50 dB PSNR")
    assert "0.40× the GMACs" in findings[1]


def test_plots_show_every_variant_and_set(tmp_path):
    bars = plot_psnr_bars(_table())
    assert len(bars.axes[0].patches) == 3 * 2  # variants × test sets
    scatter = plot_psnr_vs_gmacs(_table())
    assert len(scatter.axes[0].collections) == 3
    bars.savefig(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 0


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

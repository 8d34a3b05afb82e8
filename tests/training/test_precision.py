"""Precision: every shipped precision × optimiser × clipping trains; scores are fp32 by default."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from derain.paths import config_dir
from derain.training.tasks import train
from helpers import TINY, TINY_MODEL

CONF = config_dir()

# what the NaN stop advises when a loss diverges (derain.training.module.DerainModule._nonfinite_advice)
ADVISED_CLIP = 1.0


def _shipped(key: str, group: str) -> set:
    """Values of `key` (a dotted path) in the files of a config group and in the experiments."""
    values = set()
    for path in [*(CONF / group).glob("*.yaml"), *(CONF / "experiment").glob("*.yaml")]:
        cfg = OmegaConf.load(path)
        node = cfg.get(group, cfg) if path.parent.name == "experiment" else cfg
        value = OmegaConf.select(node, key, default="absent")
        if value != "absent":
            values.add(value)
    return values


PRECISIONS = sorted(_shipped("precision", "trainer"))
OPTIMIZERS = sorted(p.stem for p in (CONF / "optimizer").glob("*.yaml"))
FUSED = sorted(_shipped("fused", "optimizer"), key=str)
CLIPS = sorted(_shipped("gradient_clip_val", "trainer") | {ADVISED_CLIP}, key=str)


def test_the_shipped_combinations_are_the_ones_expected():
    # guards the product below against a config parse that finds nothing
    assert {"32-true", "bf16-mixed"} <= set(PRECISIONS)
    assert {"adam", "adamw"} <= set(OPTIMIZERS)
    assert {None, True} <= set(FUSED) and None in CLIPS


@pytest.mark.parametrize(
    ("precision", "optimizer", "fused", "clip"),
    list(itertools.product(PRECISIONS, OPTIMIZERS, FUSED, CLIPS)),
)
def test_every_shipped_precision_optimizer_and_clipping_trains(
    compose_config, tmp_path, precision, optimizer, fused, clip
):
    overrides = [a for a in TINY if not a.startswith("trainer.max_steps")]
    cfg = compose_config(
        "train",
        [
            *overrides,
            "trainer=cpu",  # bf16-mixed runs on CPU too (autocast to bfloat16)
            f"trainer.precision={precision}",
            f"optimizer={optimizer}",
            f"optimizer.fused={'null' if fused is None else fused}",
            f"trainer.gradient_clip_val={'null' if clip is None else clip}",
            "trainer.max_steps=2",
            "trainer.log_every_n_steps=1",
            "trainer.limit_val_batches=0",
            "logger=none",
            "callbacks.best_checkpoint=null",
            "callbacks.last_checkpoint=null",
            "test=false",
            f"paths.output_dir={tmp_path}",
        ],
    )
    result = train(cfg)
    assert math.isfinite(result["metrics"]["train/loss"])
    throughput = json.loads((tmp_path / "throughput.json").read_text())
    assert throughput["global_steps"] == 2 and throughput["precision"] == precision


def test_fp16_with_a_fused_optimizer_cannot_clip_and_says_what_to_change():
    import lightning.pytorch as pl
    from lightning.pytorch.plugins.precision import MixedPrecision

    from derain.training.module import DerainModule

    # Lightning turns precision="16-mixed" into bf16 on CPU; the plugin keeps fp16's GradScaler
    trainer = pl.Trainer(
        accelerator="cpu",
        plugins=[MixedPrecision("16-mixed", "cpu")],
        gradient_clip_val=1.0,
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    optimizer = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "fused": True}
    module = DerainModule(model=TINY_MODEL, optimizer=optimizer)
    with pytest.raises(ValueError, match=r"optimizer\.fused=false"):
        trainer.fit(module, datamodule=_datamodule())
    assert trainer.global_step == 0  # refused before the first step


def _datamodule():
    from derain.data import DerainDataModule, SyntheticSet

    return DerainDataModule(
        train=SyntheticSet("train"),
        test={"light": SyntheticSet("test", max_side=48)},
        patch_size=32,
        batch_size=1,
        num_workers=0,
        limit=2,
    )


def _test_scores(trainer_precision: str, **module_args) -> tuple[dict, str]:
    import lightning.pytorch as pl

    from derain.training.module import DerainModule
    from derain.training.report import TestReport

    torch.manual_seed(0)
    module = DerainModule(model=TINY_MODEL, **module_args)
    datamodule = _datamodule()
    report = TestReport()
    trainer = pl.Trainer(
        accelerator="cpu",
        precision=trainer_precision,
        logger=False,
        enable_progress_bar=False,
        callbacks=[report],
    )
    trainer.test(module, datamodule=datamodule, verbose=False)
    return report.results["light"], module.scored_precision


def test_testing_runs_the_network_in_fp32_whatever_the_trainers_precision():
    reference, precision = _test_scores("32-true")
    assert precision == "32-true"
    scores, precision = _test_scores("bf16-mixed")  # as trainer=gpu / trainer=ddp train
    assert precision == "32-true"
    assert scores == reference  # the very same numbers
    # the setting can keep the trainer's precision, and then says so
    scores, precision = _test_scores("bf16-mixed", eval_precision=None)
    assert precision == "bf16-mixed"
    assert scores["psnr"] != reference["psnr"]
    scores, precision = _test_scores("32-true", eval_precision="bf16-mixed")
    assert precision == "bf16-mixed" and scores["psnr"] != reference["psnr"]


def test_an_unknown_eval_precision_fails_when_the_module_is_built():
    from derain.training.module import DerainModule

    with pytest.raises(ValueError, match="eval_precision='fp16'"):
        DerainModule(model=TINY_MODEL, eval_precision="fp16")

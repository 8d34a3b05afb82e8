"""The LightningModule: non-finite losses, schedules, safe loading from checkpoints."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from derain.data import DerainDataModule, SyntheticSet
from derain.module import DerainModule, NonFiniteLossError, warmup_cosine

TINY_MODEL = {"_target_": "derain.models.ELF", "width": 8, "depth": 1}


def _datamodule():
    return DerainDataModule(
        train=SyntheticSet("train"),
        val={"light": SyntheticSet("val", max_side=32)},
        patch_size=32,
        batch_size=2,
        num_workers=0,
        limit=16,
    )


class PoisonWeightsAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.model.parameters()).fill_(float("nan"))


def test_nan_loss_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="last", every_n_train_steps=1)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=10,
        logger=False,
        enable_progress_bar=False,
        callbacks=[checkpoint, PoisonWeightsAt(3)],
        limit_val_batches=0,
    )
    with pytest.raises(NonFiniteLossError, match="global step 3"):
        trainer.fit(DerainModule(model=TINY_MODEL), datamodule=_datamodule())
    saved = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_warmup_cosine_rises_linearly_then_decays_to_the_floor():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert lrs[-1] == pytest.approx(0.1)


def test_from_checkpoint_refuses_a_network_that_is_not_derains(tmp_path):
    module = DerainModule(model=TINY_MODEL)
    hparams = dict(module.hparams)
    hparams["model"] = {**TINY_MODEL, "_target_": "os.system"}
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": hparams}, tmp_path / "bad.ckpt"
    )
    with pytest.raises(ValueError, match="os.system"):
        DerainModule.from_checkpoint(tmp_path / "bad.ckpt")


def test_from_checkpoint_restores_the_weights(tmp_path):
    torch.manual_seed(0)
    module = DerainModule(model=TINY_MODEL)
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)},
        tmp_path / "m.ckpt",
    )
    restored = DerainModule.from_checkpoint(tmp_path / "m.ckpt")
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(restored.model.eval()(x).image, module.model.eval()(x).image)

"""The LightningModule: non-finite losses, the test's self-ensemble, safe loading from checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from derain.data import DerainDataModule, SyntheticSet
from derain.evaluation.metrics import psnr
from derain.models.ensemble import ensemble_transforms, self_ensemble
from derain.training.module import DerainModule, NonFiniteLossError
from derain.training.report import TestReport
from helpers import TINY_MODEL, tiny_datamodule


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
        trainer.fit(DerainModule(model=TINY_MODEL), datamodule=tiny_datamodule())
    saved = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


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


def test_from_checkpoint_keeps_the_saved_options_unless_told_otherwise(tmp_path):
    module = DerainModule(model=TINY_MODEL, metric_channel="rgb", panel_images=2)
    hparams = {k: v for k, v in module.hparams.items() if k != "panel_images"}  # an older file
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, tmp_path / "m")
    restored = DerainModule.from_checkpoint(tmp_path / "m")
    assert restored.hparams.metric_channel == "rgb"
    assert restored.hparams.panel_images == 4  # the constructor's default
    told = DerainModule.from_checkpoint(tmp_path / "m", metric_channel="y", panel_images=1)
    assert (told.hparams.metric_channel, told.hparams.panel_images) == ("y", 1)


class RecordWeights(Callback):
    """Copies the trained (not averaged) weights after every optimiser step."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.snapshots.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


def test_ema_callback_keeps_the_exponential_average_of_every_step_and_ends_with_it():
    from derain.training.callbacks import EMA

    decay = 0.7
    recorder = RecordWeights()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=5,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[recorder, EMA(decay=decay)],
        limit_val_batches=0,
    )
    module = DerainModule(
        model=TINY_MODEL, optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-2}
    )
    trainer.fit(module, datamodule=tiny_datamodule())
    assert len(recorder.snapshots) == 5
    expected = dict(recorder.snapshots[0])  # the first update copies the weights
    for snapshot in recorder.snapshots[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * v for k, v in snapshot.items()}
    final = module.state_dict()  # training ends with the average copied into the module
    assert final.keys() == expected.keys()
    for name, value in final.items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)
    # the weights really moved, so the average differs from the last trained weights
    last = recorder.snapshots[-1]
    assert any(not torch.allclose(final[k], last[k]) for k in final if final[k].is_floating_point())


@pytest.mark.parametrize("ensemble", ["flips", "d4"])
def test_testing_with_a_self_ensemble_scores_it_and_also_the_single_pass(ensemble):
    torch.manual_seed(0)
    module = DerainModule(model=TINY_MODEL, self_ensemble=ensemble)
    datamodule = DerainDataModule(
        train=SyntheticSet("train"),
        test={"light": SyntheticSet("test", max_side=40)},
        batch_size=1,
        num_workers=0,
    )
    passes = []
    module.model.register_forward_hook(lambda m, args, out: passes.append(args[0].shape))
    report = TestReport()
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[report]
    )
    trainer.test(module, datamodule=datamodule, verbose=False)
    result = report.results["light"]

    images = datamodule.test_sets[0]
    assert len(passes) == len(images) * (1 + len(ensemble_transforms(ensemble)))
    single, averaged = [], []
    with torch.no_grad():
        for i in range(len(images)):
            item = images[i]
            x, clean = item["rainy"][None], item["clean"][None]
            single.append(psnr(module(x).image.clamp(0, 1), clean, channel="y"))
            mean = self_ensemble(lambda t: module(t).image, x, ensemble_transforms(ensemble))
            averaged.append(psnr(mean.clamp(0, 1), clean, channel="y"))
    assert result["single_psnr"] == pytest.approx(float(torch.cat(single).mean()), abs=1e-4)
    assert result["psnr"] == pytest.approx(float(torch.cat(averaged).mean()), abs=1e-4)
    assert abs(result["psnr"] - result["single_psnr"]) > 1e-3  # an untrained net is not symmetric
    rows = [r for r in report.per_image if r["set"] == "light"]
    assert [r["single_psnr"] for r in rows] == pytest.approx([float(s) for s in single], abs=1e-4)


def test_an_unknown_self_ensemble_fails_when_the_module_is_built():
    with pytest.raises(ValueError, match="unknown self-ensemble 'x8'"):
        DerainModule(model=TINY_MODEL, self_ensemble="x8")


class CountHostReads(Callback):
    """Counts reads of tensor values by the host (`.item()`, `bool()`, `int()`: the aten op
    `_local_scalar_dense`, a device sync on a GPU) from each batch's start to its end."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        class Mode(TorchDispatchMode):
            reads = 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func is torch.ops.aten._local_scalar_dense.default:
                    self.reads += 1
                return func(*args, **(kwargs or {}))

        self._mode_type = Mode
        self.per_step: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._mode = self._mode_type()
        self._mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._mode.__exit__(None, None, None)
        self.per_step.append(self._mode.reads)


def test_training_steps_do_not_read_device_values_on_the_host():
    # the loss's finiteness, the EMA's update count: a GPU would wait for each such read
    from derain.training.callbacks import EMA

    reads = CountHostReads()  # after EMA: its update is counted too
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=6,
        log_every_n_steps=50,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[EMA(), reads],
        limit_val_batches=0,
    )
    # fused Adam keeps its step count on the device (the CPU default reads it on the host)
    optimizer = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "fused": True}
    trainer.fit(DerainModule(model=TINY_MODEL, optimizer=optimizer), datamodule=tiny_datamodule())
    assert len(reads.per_step) == 6
    assert reads.per_step[1:] == [0] * 5  # the first step reads the EMA's count once


def test_a_nan_loss_is_found_at_the_next_check_and_named_by_the_step_it_appeared(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="last", every_n_train_steps=4)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=20,
        log_every_n_steps=8,
        logger=False,
        enable_progress_bar=False,
        callbacks=[PoisonWeightsAt(2), checkpoint],
        limit_val_batches=0,
    )
    with pytest.raises(NonFiniteLossError, match=r"global step 2 \(found at step 4") as error:
        trainer.fit(DerainModule(model=TINY_MODEL), datamodule=tiny_datamodule())
    assert "trainer.gradient_clip_val=1.0" in str(error.value)
    assert not (tmp_path / "last.ckpt").exists()  # the step-4 checkpoint was refused


def test_only_the_first_process_writes_the_validation_panel(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger

    written = {}
    for rank_zero in (True, False):
        folder = tmp_path / str(rank_zero)
        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=1,
            limit_train_batches=1,  # the epoch ends, validation follows
            logger=CSVLogger(folder, name="csv", version=""),
            enable_progress_bar=False,
            enable_checkpointing=False,
        )
        monkeypatch.setattr(type(trainer), "is_global_zero", property(lambda self, z=rank_zero: z))
        trainer.fit(DerainModule(model=TINY_MODEL), datamodule=tiny_datamodule())
        written[rank_zero] = list(folder.glob("**/panels/*.png"))
    assert written[True] and not written[False]


def test_a_fit_resumed_at_its_last_step_ends_with_the_average_as_a_finished_one_does(tmp_path):
    from derain.training.callbacks import EMA

    def fit(ckpt_path=None):
        torch.manual_seed(0)
        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=4,
            logger=False,
            enable_progress_bar=False,
            callbacks=[EMA(decay=0.5), ModelCheckpoint(dirpath=tmp_path, filename="last")],
            limit_val_batches=0,
        )
        module = DerainModule(
            model=TINY_MODEL,
            optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-2},
        )
        trainer.fit(module, datamodule=tiny_datamodule(), ckpt_path=ckpt_path)
        return module.state_dict()

    finished = fit()
    # nothing left to train: the module must still end with the averaged weights
    resumed = fit(ckpt_path=tmp_path / "last.ckpt")
    for name, value in finished.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)


def test_a_module_built_without_an_optimiser_trains_with_the_papers_config(compose_config):
    module = DerainModule(model=TINY_MODEL)
    adam = compose_config("train", ["optimizer=adam"]).optimizer
    assert module.hparams.optimizer == dict(adam)  # conf/optimizer/adam.yaml, kept in checkpoints
    module.trainer = pl.Trainer(accelerator="cpu", logger=False, barebones=True)
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == adam.lr == 2e-4
    assert optimizer.defaults["betas"] == tuple(adam.betas)


def test_validation_panels_go_to_each_logger_by_its_kind_not_its_class_name(tmp_path):
    class ProjectLogger(CSVLogger):  # a CSV logger of another name
        pass

    logger = ProjectLogger(tmp_path)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        logger=logger,
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=1,
    )
    trainer.fit(DerainModule(model=TINY_MODEL), datamodule=tiny_datamodule())
    assert [p.name for p in (Path(logger.log_dir) / "panels").glob("*.png")] == ["step0000001.png"]


@pytest.mark.parametrize(
    ("max_epochs", "shown"), [(-1, "Epoch 3"), (None, "Epoch 3"), (10, "Epoch 3/9")]
)
def test_the_progress_bar_names_no_last_epoch_for_a_run_bounded_by_steps(max_epochs, shown):
    from types import SimpleNamespace

    from derain.training.callbacks import ProgressBar

    bar = ProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs)
    assert bar._get_train_description(3).strip() == shown

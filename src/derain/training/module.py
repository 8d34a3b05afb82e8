"""The LightningModule: wires the network, the loss, the optimiser and the papers' metrics.

Every part arrives as a plain config mapping (Hydra `_target_` + arguments), stored verbatim in
the checkpoint's `hyper_parameters`, so a checkpoint alone rebuilds the network — and loads with
`torch.load(weights_only=True)`, i.e. without running code from the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities.enums import GradClipAlgorithmType
from torch import Tensor, nn
from torchmetrics import MetricCollection

from derain.evaluation.metrics import PSNR, SSIM, psnr, ssim
from derain.evaluation.panels import make_panel, save_panel
from derain.inference.tiling import DEFAULT_OVERLAP, check_max_tile, tiled_apply
from derain.models import pad_to_multiple
from derain.models.ensemble import ensemble_transforms, self_ensemble, self_ensemble_name
from derain.training import wandb
from derain.training.losses import ELFLoss

if TYPE_CHECKING:
    from derain.inference import StoredNetwork


def _plain(value: Any) -> Any:
    """OmegaConf containers → plain dicts/lists (checkpoints must hold only plain types)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return value


def _synced_count(metric) -> int:
    """Images a per-image metric has seen, over all processes."""
    with metric.sync_context():
        return int(metric.count)


@dataclass
class TestBatch:
    """What `DerainModule.test_step` returns for one batch of a test set.

    Images are B×3×H×W float tensors in [0, 1]; scores are per image (PSNR in dB).
    `single_psnr` is the single pass's PSNR when the output is a self-ensemble, else None.
    """

    set_name: str
    names: list[str]
    rainy: Tensor
    restored: Tensor
    clean: Tensor
    psnr: list[float]
    ssim: list[float]
    input_psnr: list[float]
    single_psnr: list[float] | None


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss."""


EVAL_PRECISIONS = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
"""Precisions validation and test can run the network in (None: autocast off, float32)."""

_KEPT_OPTIONS = ("metric_channel", "panel_images")
"""Options `DerainModule.from_network` takes from the checkpoint unless told otherwise."""

_NO_NONFINITE_STEP = 2**62
"""Sentinel of the first-non-finite-step tracker: no non-finite loss seen."""


def _check_eval_precision(precision: str | None) -> None:
    if precision is not None and precision not in EVAL_PRECISIONS:
        raise ValueError(
            f"eval_precision={precision!r}: expected one of {', '.join(EVAL_PRECISIONS)} or null "
            "(the trainer's precision)"
        )


@contextlib.contextmanager
def network_precision(precision: str | None, device_type: str) -> Iterator[None]:
    """Runs the enclosed forward passes in `precision`, whatever autocast the trainer entered.

    "32-true": autocast off; "bf16-mixed" / "16-mixed": autocast to that type; None: leaves
    the trainer's precision. On CUDA, float32 convolutions follow PyTorch's TF32 settings
    (`torch.backends.cudnn.conv.fp32_precision`), which this does not change.
    """
    if precision is None:
        yield
        return
    _check_eval_precision(precision)
    dtype = EVAL_PRECISIONS[precision]
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        yield


def paper_optimizer() -> dict[str, Any]:
    """The paper's optimiser config, conf/optimizer/adam.yaml: what a `DerainModule` built
    without an optimiser trains with."""
    from omegaconf import OmegaConf

    from derain.paths import config_dir

    return OmegaConf.to_container(OmegaConf.load(config_dir() / "optimizer" / "adam.yaml"))


class DerainModule(pl.LightningModule):
    """Trains and evaluates a deraining network.

    Args:
        model: network config (`_target_` + arguments), e.g. conf/model/elf.yaml.
        loss: loss config (default: the paper's `ELFLoss`).
        optimizer: optimiser config with `_partial_: true` (receives the parameters); None:
            the paper's, conf/optimizer/adam.yaml (`paper_optimizer`).
        scheduler: None (constant learning rate), or a config with `_partial_: true` of a
            function `(optimizer, trainer) -> Lightning lr_scheduler config`
            (`derain.training.schedules`, conf/scheduler/*.yaml).
        metric_channel: "y" (papers' protocol) or "rgb".
        panel_images: how many validation images of the first set go into the logged panel.
        self_ensemble: the test's self-ensemble (`derain.models.ensemble.self_ensemble_name`):
            None/false (one pass), "d4" or true (mean over the 8 flips/rotations) or "flips"
            (the 4 that keep streaks' orientation). The test then scores the ensemble and also
            the single pass (`single_psnr`, `single_ssim`); validation stays one pass.
        eval_precision: precision of the network in validation and test, whatever the
            trainer's: "32-true" (float32, the default: scores for tables), "bf16-mixed",
            "16-mixed", or None (the trainer's precision). Results record it.
        max_tile: validation and test run images with a side longer than this in overlapping
            tiles of at most this side, as `derain.inference.Restorer` does for a model with
            this `max_tile` (see `derain.inference.StoredNetwork`); None: whole images.
            Checkpoints keep it, so derain-eval and derain-predict use it too.
        compiled_val_multiple: with a compiled network (`model.compile=true`), validation pads
            each image (or tile) to multiples of this many pixels per side, with the network's
            own padding rule, and crops the output back: the compiled blocks, whose shapes are
            static, then meet a few sizes instead of one per image size (each new size
            compiles again, and past PyTorch's recompile limit they fall back to eager).
            Validation scores are then those of the network padding to this multiple instead
            of its own. None: no bucketing. The final test always runs unpadded.

    Speed switches (memory layout, torch.compile) belong to the network's config:
    `model.channels_last`, `model.compile` (see `derain.models.ELF`).
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        loss: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        metric_channel: str = "y",
        panel_images: int = 4,
        self_ensemble: bool | str | None = None,
        eval_precision: str | None = "32-true",
        max_tile: int | None = None,
        compiled_val_multiple: int | None = 128,
    ) -> None:
        super().__init__()
        self_ensemble = self_ensemble_name(
            self_ensemble
        )  # unknown names fail here, not after training
        _check_eval_precision(eval_precision)
        check_max_tile(max_tile, name="module.max_tile")
        if compiled_val_multiple is not None and compiled_val_multiple < 1:
            raise ValueError(
                f"module.compiled_val_multiple must be a positive number of pixels or null, got "
                f"{compiled_val_multiple}"
            )
        self.save_hyperparameters(
            {
                "model": _plain(model),
                "loss": _plain(loss),
                "optimizer": _plain(optimizer) or paper_optimizer(),
                "scheduler": _plain(scheduler),
                "metric_channel": metric_channel,
                "panel_images": panel_images,
                "self_ensemble": self_ensemble,
                "eval_precision": eval_precision,
                "max_tile": max_tile,
                "compiled_val_multiple": compiled_val_multiple,
            }
        )
        self.model: nn.Module = instantiate(self.hparams.model)
        self.loss = instantiate(self.hparams.loss) if loss else ELFLoss()
        self.val_set_names: list[str] = ["val"]
        self.test_set_names: list[str] = ["test"]
        self.val_metrics = nn.ModuleList([self._metric_set()])
        self.test_metrics = nn.ModuleList([self._metric_set(with_input=True)])
        self._panel_rows: list[list[Tensor]] = []
        # first global step whose loss was not finite, on the loss's device (_track_nonfinite)
        self._first_nonfinite: Tensor | None = None
        self._nonfinite_loss: Tensor | None = None

    # ----------------------------------------------------------------------------- set-up
    def _metric_set(self, with_input: bool = False) -> MetricCollection:
        channel = self.hparams.metric_channel
        metrics = {"psnr": PSNR(channel=channel), "ssim": SSIM(channel=channel)}
        if with_input:
            metrics |= {"input_psnr": PSNR(channel=channel), "input_ssim": SSIM(channel=channel)}
            if self.hparams.self_ensemble:
                metrics |= {
                    "single_psnr": PSNR(channel=channel),
                    "single_ssim": SSIM(channel=channel),
                }
        return MetricCollection(metrics)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        if stage in ("fit", "validate") and getattr(datamodule, "val_set_names", None):
            self.val_set_names = list(datamodule.val_set_names)
            self.val_metrics = nn.ModuleList([self._metric_set() for _ in self.val_set_names])
        if stage == "test" and getattr(datamodule, "test_set_names", None):
            self.test_set_names = list(datamodule.test_set_names)
            self.test_metrics = nn.ModuleList(
                [self._metric_set(with_input=True) for _ in self.test_set_names]
            )

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer)(self.model.parameters())
        self._check_clipping(optimizer)
        if not self.hparams.scheduler:
            return optimizer
        schedule = instantiate(self.hparams.scheduler)(optimizer, self.trainer)
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def _scales_gradients(self) -> bool:
        """16-mixed: the loss, hence every gradient, is multiplied by the GradScaler's factor."""
        return getattr(self.trainer.precision_plugin, "scaler", None) is not None

    def _check_clipping(self, optimizer: torch.optim.Optimizer) -> None:
        clip = self.trainer.gradient_clip_val
        if (
            clip
            and self._scales_gradients()
            and getattr(optimizer, "_step_supports_amp_scaling", 0)
        ):
            raise ValueError(
                f"trainer.precision=16-mixed with a fused optimizer (optimizer.fused=true) cannot "
                f"clip gradients (trainer.gradient_clip_val={clip}): the fused step unscales the "
                "gradients itself, after clipping would have to happen. Use "
                "trainer.precision=bf16-mixed, or set optimizer.fused=false"
            )

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        plugin = self.trainer.precision_plugin
        if gradient_clip_val and isinstance(plugin, MixedPrecision) and plugin.scaler is None:
            # bf16-mixed scales nothing, so any optimiser's gradients clip as they are; Lightning
            # refuses fused optimisers under every mixed precision (fp16's unscale in the step)
            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or "norm")
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ----------------------------------------------------------------------------- steps
    def forward(self, rainy: Tensor):
        return self.model(rainy)

    def _track_nonfinite(self, loss: Tensor) -> None:
        """Notes the first step whose loss is NaN/inf, on the device: checking it on the host at
        every step would make the CPU wait for the GPU each time. `_check_finite_loss` reads it."""
        loss = loss.detach().float()
        if self._first_nonfinite is None or self._first_nonfinite.device != loss.device:
            self._first_nonfinite = torch.full((), _NO_NONFINITE_STEP, device=loss.device)
            self._nonfinite_loss = torch.zeros((), device=loss.device)
        first = ~torch.isfinite(loss) & (self._first_nonfinite == _NO_NONFINITE_STEP)
        self._first_nonfinite = torch.where(first, self.global_step, self._first_nonfinite)
        self._nonfinite_loss = torch.where(first, loss, self._nonfinite_loss)

    def _check_finite_loss(self) -> None:
        """Raises `NonFiniteLossError` if any process saw a NaN/inf loss since training began.

        A collective under several processes (the earliest step over all of them), so every
        process calls it at the same points: every `trainer.log_every_n_steps` steps, before
        any checkpoint is written (a checkpoint of broken weights must not replace a good one)
        and when training ends.
        """
        if self._first_nonfinite is None:
            return
        first = self._first_nonfinite
        if self.trainer.world_size > 1:
            first = self.trainer.strategy.reduce(first.clone(), reduce_op="min")
        step = int(first)
        if step == _NO_NONFINITE_STEP:
            return
        mine = int(self._first_nonfinite) == step
        value = f"{float(self._nonfinite_loss)}" if mine else "non-finite (on another process)"
        raise NonFiniteLossError(
            f"loss became {value} at global step {step} (found at step {self.global_step}, "
            f"epoch {self.current_epoch}); training stopped and the checkpoints written before "
            f"it are kept. {self._nonfinite_advice()}"
        )

    def _nonfinite_advice(self) -> str:
        clip = self.trainer.gradient_clip_val
        lr = "Lower optimizer.lr"
        if clip:
            return f"{lr} or trainer.gradient_clip_val (now {clip})."
        if self._scales_gradients() and self.hparams.optimizer.get("fused"):
            return f"{lr}, or clip gradients: trainer.gradient_clip_val=1.0 optimizer.fused=false."
        return f"{lr} or clip gradients: trainer.gradient_clip_val=1.0."

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
            self._check_finite_loss()

    def on_train_end(self) -> None:
        self._check_finite_loss()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_finite_loss()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self(batch["rainy"])
        loss, terms = self.loss(out, batch)
        self._track_nonfinite(loss)
        batch_size = batch["rainy"].shape[0]
        # not prog_bar: Lightning would read it on the host at every step (a GPU sync); the
        # progress bar (derain.training.callbacks.ProgressBar) shows it per logging interval
        self.log("train/loss", loss, batch_size=batch_size)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        return loss

    def _restore(self, rainy: Tensor, multiple: int | None = None):
        """(the network's output, or None when it ran in tiles; the restored image in [0, 1]).
        `multiple`: run on the image padded to multiples of it (`_padded_run`)."""
        if self._tiled(rainy):
            return None, self._restored_image(rainy, multiple).float().clamp(0, 1)
        out = self._padded_run(rainy, multiple)
        return out, out.image.float().clamp(0, 1)

    def _padded_run(self, rainy: Tensor, multiple: int | None):
        """The network's output for `rainy`, run on it padded to multiples of `multiple` by the
        network's own rule (`pad_to_multiple`) and cropped back (image and rain only); the
        plain output when `multiple` is None."""
        if multiple is None:
            return self(rainy)
        h, w = rainy.shape[-2:]
        out = self(pad_to_multiple(rainy, multiple))
        rain = None if out.rain is None else out.rain[..., :h, :w]
        return out._replace(image=out.image[..., :h, :w], rain=rain)

    @property
    def val_multiple(self) -> int | None:
        """What validation pads images to multiples of: `compiled_val_multiple` when the
        network is compiled (`model.compile`), else None (its own padding only)."""
        if not self.hparams.model.get("compile"):
            return None
        return self.hparams.compiled_val_multiple

    def _tiled(self, rainy: Tensor) -> bool:
        max_tile = self.hparams.max_tile
        return max_tile is not None and max(rainy.shape[-2:]) > max_tile

    def _restored_image(self, rainy: Tensor, multiple: int | None = None) -> Tensor:
        """The network's image, in tiles of at most `max_tile` when the input is larger."""
        if not self._tiled(rainy):
            return self._padded_run(rainy, multiple).image
        return tiled_apply(
            lambda tile: self._padded_run(tile, multiple).image,
            rainy,
            self.hparams.max_tile,
            DEFAULT_OVERLAP,
            self.model.multiple,
        )

    @property
    def scored_precision(self) -> str:
        """The precision validation and test run the network in: `eval_precision`, or the
        trainer's when that is None."""
        precision = self.hparams.eval_precision
        if precision is not None:
            return precision
        return str(self.trainer.precision) if self._trainer is not None else "32-true"

    def _check_eval_weights(self) -> None:
        if self.hparams.eval_precision != "32-true":
            return
        dtype = next(self.model.parameters()).dtype
        if dtype != torch.float32:
            raise ValueError(
                f"eval_precision=32-true, but the network's weights are {dtype} "
                f"(trainer.precision={self.trainer.precision}): use a mixed precision "
                "(bf16-mixed, 16-mixed), which keeps float32 weights, or set "
                "eval_precision to that precision"
            )

    def on_validation_start(self) -> None:
        self._check_eval_weights()

    def on_test_start(self) -> None:
        self._check_eval_weights()

    def _eval_precision(self):
        return network_precision(self.hparams.eval_precision, self.device.type)

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        with self._eval_precision():
            out, restored = self._restore(batch["rainy"], self.val_multiple)
        self.val_metrics[dataloader_idx].update(restored, batch["clean"])
        if dataloader_idx == 0 and len(self._panel_rows) < self.hparams.panel_images:
            rain = out.rain if out is not None and out.rain is not None else None
            rain = batch["rainy"] - restored if rain is None else rain
            self._panel_rows.append(
                [batch["rainy"][0], restored[0], batch["clean"][0], rain[0].abs().clamp(0, 1)]
            )

    def on_validation_epoch_end(self) -> None:
        psnrs, images = [], 0
        for name, metrics in zip(self.val_set_names, self.val_metrics, strict=True):
            values = metrics.compute()  # gathers the sums and counts of every process
            images += _synced_count(metrics["psnr"])
            metrics.reset()
            # every process holds the same, already gathered values: sync_dist says so to
            # Lightning (an all-reduce of one scalar each), which otherwise advises it
            self.log(f"val/{name}/psnr", values["psnr"].float(), sync_dist=True)
            self.log(f"val/{name}/ssim", values["ssim"].float(), sync_dist=True)
            psnrs.append(values["psnr"].float())
        # the unweighted mean over sets is what checkpoints are selected on
        self.log("val/psnr", torch.stack(psnrs).mean(), prog_bar=True, sync_dist=True)
        self.log("val/images", float(images), sync_dist=True)
        # every process holds its own examples; one panel, from the first, is enough
        if self._panel_rows and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self._log_panel(make_panel(self._panel_rows))
        self._panel_rows = []

    def _log_panel(self, panel: np.ndarray) -> None:
        key, step = "val/panel", self.global_step
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                wandb.log_panel(logger, key, panel, step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(key, panel, step, dataformats="HWC")
            elif isinstance(logger, CSVLogger):
                save_panel(panel, Path(logger.log_dir) / "panels" / f"step{step:07d}.png")

    def test_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> TestBatch:
        """Scores one batch (the set's metrics are updated) and returns its images and
        per-image scores, which a `derain.training.report.TestReport` collects."""
        with self._eval_precision():
            return self._test_batch(batch, batch_idx, dataloader_idx)

    def _test_batch(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int) -> TestBatch:
        _, restored = self._restore(batch["rainy"])
        rainy, clean = batch["rainy"].float().clamp(0, 1), batch["clean"]
        metrics = self.test_metrics[dataloader_idx]
        single = None
        if "single_psnr" in metrics:
            single = restored
            metrics["single_psnr"].update(single, clean)
            metrics["single_ssim"].update(single, clean)
            transforms = ensemble_transforms(self.hparams.self_ensemble)
            restored = self_ensemble(self._restored_image, batch["rainy"], transforms).clamp(0, 1)
        metrics["psnr"].update(restored, clean)
        metrics["ssim"].update(restored, clean)
        metrics["input_psnr"].update(rainy, clean)
        metrics["input_ssim"].update(rainy, clean)
        channel = self.hparams.metric_channel
        names = batch.get("name") or [f"{batch_idx:05d}_{i}" for i in range(len(restored))]
        return TestBatch(
            set_name=self.test_set_names[dataloader_idx],
            names=list(names),
            rainy=rainy,
            restored=restored,
            clean=clean,
            psnr=psnr(restored, clean, channel=channel).tolist(),
            ssim=ssim(restored, clean, channel=channel).tolist(),
            input_psnr=psnr(rainy, clean, channel=channel).tolist(),
            single_psnr=None if single is None else psnr(single, clean, channel=channel).tolist(),
        )

    def test_set_scores(self) -> dict[str, dict[str, float]]:
        """Per test set: the means of every test metric over its images, and `images`, the
        number of images (all processes' together). Valid until the test epoch ends."""
        scores = {}
        for name, metrics in zip(self.test_set_names, self.test_metrics, strict=True):
            values = {k: float(v) for k, v in metrics.compute().items()}
            scores[name] = {**values, "images": _synced_count(metrics["psnr"])}
        return scores

    def on_test_epoch_end(self) -> None:
        for name, values in self.test_set_scores().items():
            for key, value in values.items():
                if key != "images":
                    self.log(f"test/{name}/{key}", value)
        for metrics in self.test_metrics:
            metrics.reset()

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str = "cpu", **options: Any
    ) -> DerainModule:
        """Rebuilds the module from a checkpoint alone (read once, weights only, no code runs);
        `options` as for `from_network`."""
        from derain.inference import load_network

        # load_network refuses checkpoints whose network is not derain's, before anything is built
        return cls.from_network(load_network(path, device=map_location), **options)

    @classmethod
    def from_network(cls, stored: StoredNetwork, **options: Any) -> DerainModule:
        """A module around a network read by `derain.inference.load_network`.

        `options` (metric_channel, panel_images, self_ensemble, eval_precision, max_tile)
        replace the checkpoint's; the loss, optimiser and schedule are not rebuilt.
        """
        # what the checkpoint lacks keeps the constructor's default
        saved = {k: v for k, v in stored.hyper_parameters.items() if k in _KEPT_OPTIONS}
        module = cls(
            model={**stored.config, "compile": False},  # the caller chooses (see load_model)
            **{**saved, "max_tile": stored.max_tile, **options},
        )
        module.model.load_state_dict(stored.model.state_dict())
        return module

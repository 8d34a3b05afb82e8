"""The LightningModule: wires the network, the loss, the optimiser and the papers' metrics.

Every part arrives as a plain config mapping (Hydra `_target_` + arguments), stored verbatim in
the checkpoint's `hyper_parameters`, so a checkpoint alone rebuilds the network — and loads with
`torch.load(weights_only=True)`, i.e. without running code from the file.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities.enums import GradClipAlgorithmType
from torch import Tensor, nn
from torchmetrics import MetricCollection

from derain.data.io import write_image
from derain.evaluation.metrics import PSNR, SSIM, psnr, ssim
from derain.evaluation.panels import make_panel, save_panel
from derain.models.ensemble import ensemble_transforms, self_ensemble
from derain.training.losses import ELFLoss


def _plain(value: Any) -> Any:
    """OmegaConf containers → plain dicts/lists (checkpoints must hold only plain types)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return value


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.01,
    elapsed_fraction: Callable[[], float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_steps`, then cosine decay to `min_lr_ratio`·lr at `total_steps`.

    With `elapsed_fraction` (a function returning the share of a time budget used so far, read at
    every scheduler step), the decay's progress is the larger of the step share and the time
    share: the learning rate reaches its floor when either the steps or the time run out.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if elapsed_fraction is not None:
            progress = max(progress, elapsed_fraction())
        progress = min(1.0, progress)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


TIME_SHARE_SYNC_EVERY = 25
"""Under several processes, the time share of `max_time_fraction` is rank 0's, fetched every this
many calls (scheduler steps) rather than at each: a broadcast waits for every process."""


def max_time_fraction(trainer: Any) -> Callable[[], float] | None:
    """A function returning the share of the trainer's `max_time` spent in training so far
    (resumed runs included), or None when the trainer has no time limit.

    Under several processes all of them must keep the same learning rate, so the share is rank
    0's clock, broadcast at the first call and then every `TIME_SHARE_SYNC_EVERY` calls (every
    process calls it once per scheduler step), and held in between.
    """
    timers = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
    if not timers or timers[0].time_remaining() is None:
        return None
    timer = timers[0]
    shared = {"calls": 0, "share": 0.0}

    def local_share() -> float:
        elapsed = timer.time_elapsed("train")
        return elapsed / max(1e-9, elapsed + timer.time_remaining("train"))

    def fraction() -> float:
        if trainer.world_size == 1:
            return local_share()
        if shared["calls"] % TIME_SHARE_SYNC_EVERY == 0:
            shared["share"] = float(trainer.strategy.broadcast(local_share(), src=0))
        shared["calls"] += 1
        return shared["share"]

    return fraction


def _synced_count(metric) -> int:
    """Images a per-image metric has seen, over all processes."""
    with metric.sync_context():
        return int(metric.count)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss."""


EVAL_PRECISIONS = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
"""Precisions validation and test can run the network in (None: autocast off, float32)."""

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


class DerainModule(pl.LightningModule):
    """Trains and evaluates a deraining network.

    Args:
        model: network config (`_target_` + arguments), e.g. conf/model/elf.yaml.
        loss: loss config (default: the paper's `ELFLoss`).
        optimizer: optimiser config with `_partial_: true` (receives the parameters).
        scheduler: None, or {"scheduler": config with `_partial_: true`, "interval": "epoch"|"step",
            "frequency": int}.
        metric_channel: "y" (papers' protocol) or "rgb".
        panel_images: how many validation images of the first set go into the logged panel.
        test_ensemble: None (one pass), or a self-ensemble for testing: "d4" (mean over the 8
            flips/rotations) or "flips" (the 4 that keep streaks' orientation). The test then
            scores the ensemble and also the single pass (`single_psnr`, `single_ssim`);
            validation stays one pass.
        eval_precision: precision of the network in validation and test, whatever the
            trainer's: "32-true" (float32, the default: scores for tables), "bf16-mixed",
            "16-mixed", or None (the trainer's precision). Results record it.

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
        test_ensemble: str | None = None,
        eval_precision: str | None = "32-true",
    ) -> None:
        super().__init__()
        if test_ensemble is not None:
            ensemble_transforms(test_ensemble)  # unknown names fail here, not after training
        _check_eval_precision(eval_precision)
        self.save_hyperparameters(
            {
                "model": _plain(model),
                "loss": _plain(loss),
                "optimizer": _plain(optimizer),
                "scheduler": _plain(scheduler),
                "metric_channel": metric_channel,
                "panel_images": panel_images,
                "test_ensemble": test_ensemble,
                "eval_precision": eval_precision,
            }
        )
        self.model: nn.Module = instantiate(self.hparams.model)
        self.loss = instantiate(self.hparams.loss) if loss else ELFLoss()
        self.val_set_names: list[str] = ["val"]
        self.test_set_names: list[str] = ["test"]
        self.val_metrics = nn.ModuleList([self._metric_set()])
        self.test_metrics = nn.ModuleList([self._metric_set(with_input=True)])
        self._panel_rows: list[list[Tensor]] = []
        self.test_results: dict[str, dict[str, float]] = {}
        self.test_per_image: list[dict[str, Any]] = []
        self.save_images_dir: Path | None = None
        self._test_panel: dict[str, list[tuple[list[Tensor], str]]] = {}
        # first global step whose loss was not finite, on the loss's device (_track_nonfinite)
        self._first_nonfinite: Tensor | None = None
        self._nonfinite_loss: Tensor | None = None

    # ----------------------------------------------------------------------------- set-up
    def _metric_set(self, with_input: bool = False) -> MetricCollection:
        channel = self.hparams.metric_channel
        metrics = {"psnr": PSNR(channel=channel), "ssim": SSIM(channel=channel)}
        if with_input:
            metrics |= {"input_psnr": PSNR(channel=channel), "input_ssim": SSIM(channel=channel)}
            if self.hparams.get("test_ensemble"):
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
        opt_cfg = self.hparams.optimizer or {
            "_target_": "torch.optim.Adam",
            "_partial_": True,
            "lr": 2e-4,
            "betas": [0.9, 0.999],
        }
        optimizer = instantiate(opt_cfg)(self.model.parameters())
        self._check_clipping(optimizer)
        sched = self.hparams.scheduler
        if not sched:
            return optimizer
        factory = instantiate(sched["scheduler"])
        if sched["scheduler"].get("_target_", "").endswith("warmup_cosine"):
            total = sched["scheduler"].get("total_steps") or self.trainer.estimated_stepping_batches
            follow = max_time_fraction(self.trainer) if sched.get("follow_max_time") else None
            scheduler = factory(optimizer, total_steps=int(total), elapsed_fraction=follow)
        else:
            scheduler = factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": sched.get("interval", "epoch"),
                "frequency": sched.get("frequency", 1),
            },
        }

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
        if self._scales_gradients() and (self.hparams.optimizer or {}).get("fused"):
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
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        return loss

    def _restore(self, rainy: Tensor):
        out = self(rainy)
        return out, out.image.float().clamp(0, 1)

    @property
    def scored_precision(self) -> str:
        """The precision validation and test run the network in: `eval_precision`, or the
        trainer's when that is None."""
        precision = self.hparams.get("eval_precision", "32-true")
        if precision is not None:
            return precision
        return str(self.trainer.precision) if self._trainer is not None else "32-true"

    def _check_eval_weights(self) -> None:
        if self.hparams.get("eval_precision", "32-true") != "32-true":
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
        return network_precision(self.hparams.get("eval_precision", "32-true"), self.device.type)

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        with self._eval_precision():
            out, restored = self._restore(batch["rainy"])
        self.val_metrics[dataloader_idx].update(restored, batch["clean"])
        if dataloader_idx == 0 and len(self._panel_rows) < self.hparams.panel_images:
            rain = out.rain if out.rain is not None else batch["rainy"] - restored
            self._panel_rows.append(
                [batch["rainy"][0], restored[0], batch["clean"][0], rain[0].abs().clamp(0, 1)]
            )

    def on_validation_epoch_end(self) -> None:
        psnrs, images = [], 0
        for name, metrics in zip(self.val_set_names, self.val_metrics, strict=True):
            values = metrics.compute()  # gathers the sums and counts of every process
            images += _synced_count(metrics["psnr"])
            metrics.reset()
            self.log(f"val/{name}/psnr", values["psnr"].float())
            self.log(f"val/{name}/ssim", values["ssim"].float())
            psnrs.append(values["psnr"].float())
        # the unweighted mean over sets is what checkpoints are selected on
        self.log("val/psnr", torch.stack(psnrs).mean(), prog_bar=True)
        self.log("val/images", float(images))
        # every process holds its own examples; one panel, from the first, is enough
        if self._panel_rows and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self._log_panel(make_panel(self._panel_rows))
        self._panel_rows = []

    def _log_panel(self, panel: np.ndarray) -> None:
        key, step = "val/panel", self.global_step
        for logger in self.loggers:
            kind = type(logger).__name__
            if kind == "WandbLogger":
                logger.log_image(
                    key=key, images=[panel], step=step, caption=["rainy | restored | clean | rain"]
                )
            elif kind == "TensorBoardLogger":
                logger.experiment.add_image(key, panel, step, dataformats="HWC")
            elif kind == "CSVLogger":
                save_panel(panel, Path(logger.log_dir) / "panels" / f"step{step:07d}.png")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        with self._eval_precision():
            self._test_batch(batch, batch_idx, dataloader_idx)

    def _test_batch(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int) -> None:
        _, restored = self._restore(batch["rainy"])
        rainy, clean = batch["rainy"].float().clamp(0, 1), batch["clean"]
        metrics = self.test_metrics[dataloader_idx]
        single = None
        if "single_psnr" in metrics:
            single = restored
            metrics["single_psnr"].update(single, clean)
            metrics["single_ssim"].update(single, clean)
            transforms = ensemble_transforms(self.hparams.test_ensemble)
            restored = self_ensemble(lambda t: self(t).image, batch["rainy"], transforms).clamp(
                0, 1
            )
        metrics["psnr"].update(restored, clean)
        metrics["ssim"].update(restored, clean)
        metrics["input_psnr"].update(rainy, clean)
        metrics["input_ssim"].update(rainy, clean)
        channel = self.hparams.metric_channel
        names = batch.get("name") or [f"{batch_idx:05d}_{i}" for i in range(len(restored))]
        set_name = self.test_set_names[dataloader_idx]
        single_psnrs = None if single is None else psnr(single, clean, channel=channel).tolist()
        for i, (p, s, ip) in enumerate(
            zip(
                psnr(restored, clean, channel=channel).tolist(),
                ssim(restored, clean, channel=channel).tolist(),
                psnr(rainy, clean, channel=channel).tolist(),
                strict=True,
            )
        ):
            row = {"set": set_name, "name": names[i], "psnr": p, "ssim": s, "input_psnr": ip}
            if single_psnrs is not None:
                row["single_psnr"] = single_psnrs[i]
            self.test_per_image.append(row)
        per_set = max(1, self.hparams.panel_images // len(self.test_set_names))
        examples = self._test_panel.setdefault(set_name, [])
        for i in range(len(restored)):
            if len(examples) < per_set:
                p, ip = (
                    self.test_per_image[-len(restored) + i]["psnr"],
                    self.test_per_image[-len(restored) + i]["input_psnr"],
                )
                row = [rainy[i], restored[i], clean[i], (rainy[i] - restored[i]).abs().clamp(0, 1)]
                examples.append(([t.cpu() for t in row], f"{set_name}: {ip:.1f} -> {p:.1f} dB"))
        if self.save_images_dir is not None:
            folder = self.save_images_dir / set_name
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(restored):
                write_image(
                    folder / f"{Path(names[i]).stem}.png", img.permute(1, 2, 0).cpu().numpy()
                )

    def on_test_epoch_end(self) -> None:
        for name, metrics in zip(self.test_set_names, self.test_metrics, strict=True):
            values = {k: float(v) for k, v in metrics.compute().items()}
            count = _synced_count(metrics["psnr"])
            metrics.reset()
            self.test_results[name] = {**values, "images": count}
            for key, value in values.items():
                self.log(f"test/{name}/{key}", value)

    def test_panel(self) -> np.ndarray | None:
        """Examples of every test set (rainy | restored | clean | |rainy − restored|), or None."""
        examples = [e for rows in self._test_panel.values() for e in rows]
        if not examples:
            return None
        return make_panel([row for row, _ in examples], row_titles=[t for _, t in examples])

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> DerainModule:
        """Rebuilds the module from a checkpoint alone (weights-only load, no code runs)."""
        from derain.inference import load_model

        # load_model refuses checkpoints whose network is not derain's, before anything is built
        network = load_model(path, device=map_location)
        hparams = torch.load(path, map_location=map_location, weights_only=True)["hyper_parameters"]
        module = cls(
            model={**hparams["model"], "compile": False},  # the caller chooses (see load_model)
            metric_channel=hparams.get("metric_channel", "y"),
            panel_images=hparams.get("panel_images", 4),
        )
        module.model.load_state_dict(network.state_dict())
        return module

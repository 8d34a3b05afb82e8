"""The LightningModule: wires the network, the loss, the optimiser and the papers' metrics.

Every part arrives as a plain config mapping (Hydra `_target_` + arguments), stored verbatim in
the checkpoint's `hyper_parameters`, so a checkpoint alone rebuilds the network — and loads with
`torch.load(weights_only=True)`, i.e. without running code from the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Timer
from torch import Tensor, nn
from torchmetrics import MetricCollection

from derain.data.io import write_image
from derain.inference.ensemble import ensemble_transforms, self_ensemble
from derain.losses import ELFLoss
from derain.metrics import PSNR, SSIM, psnr, ssim
from derain.visualize import make_panel, save_panel


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


def max_time_fraction(trainer: Any) -> Callable[[], float] | None:
    """A function returning the share of the trainer's `max_time` spent in training so far
    (resumed runs included), or None when the trainer has no time limit.

    Under several processes every call takes rank 0's clock (a broadcast), so all processes keep
    the same learning rate.
    """
    timers = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
    if not timers or timers[0].time_remaining() is None:
        return None
    timer = timers[0]

    def fraction() -> float:
        elapsed = timer.time_elapsed("train")
        share = elapsed / max(1e-9, elapsed + timer.time_remaining("train"))
        if trainer.world_size > 1:
            share = float(trainer.strategy.broadcast(share, src=0))
        return share

    return fraction


def _synced_count(metric) -> int:
    """Images a per-image metric has seen, over all processes."""
    with metric.sync_context():
        return int(metric.count)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss."""


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
    ) -> None:
        super().__init__()
        if test_ensemble is not None:
            ensemble_transforms(test_ensemble)  # unknown names fail here, not after training
        self.save_hyperparameters(
            {
                "model": _plain(model),
                "loss": _plain(loss),
                "optimizer": _plain(optimizer),
                "scheduler": _plain(scheduler),
                "metric_channel": metric_channel,
                "panel_images": panel_images,
                "test_ensemble": test_ensemble,
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

    # ----------------------------------------------------------------------------- steps
    def forward(self, rainy: Tensor):
        return self.model(rainy)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self(batch["rainy"])
        loss, terms = self.loss(out, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); training stopped and the checkpoints "
                "written so far are kept. Lower optimizer.lr or set trainer.gradient_clip_val."
            )
        batch_size = batch["rainy"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        return loss

    def _restore(self, rainy: Tensor):
        out = self(rainy)
        return out, out.image.float().clamp(0, 1)

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
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
        if self._panel_rows and not self.trainer.sanity_checking:
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

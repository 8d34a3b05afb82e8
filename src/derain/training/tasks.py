"""The train and eval tasks behind `derain-train` and `derain-eval` (config in, results out)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from derain.evaluation.tables import markdown_table
from derain.inference import load_network
from derain.inference.sources import WEIGHTS_FILE, resolve_model
from derain.models import optimize
from derain.runtime.console import quiet_third_party
from derain.runtime.memory import retain_freed_memory
from derain.training import finished, wandb
from derain.training.checkpointing import newest_checkpoint, slurm_requeued
from derain.training.module import DerainModule
from derain.training.report import TestReport

log = logging.getLogger(__name__)


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Callbacks of the `callbacks` group; entries set to null are dropped."""
    return [instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return [instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]


def resolve_ckpt_path(ckpt_path: str | None, cfg: DictConfig, requeued: bool = False) -> str | None:
    """`last` → this run's checkpoints/last.ckpt if present, else the newest last.ckpt (or
    SLURM hpc_ckpt_N.ckpt) of any earlier run of the same task; other values must name an
    existing file. With `requeued` (training in a requeued SLURM job) and no ckpt_path, the
    newest checkpoint that this SLURM job wrote, if any."""
    runs = Path(cfg.paths.log_dir) / cfg.task_name
    if not ckpt_path and requeued:
        found = newest_checkpoint(runs, slurm_job_id=os.environ.get("SLURM_JOB_ID"))
        if found is not None:
            log.info("requeued SLURM job: resuming from %s", found)
        return str(found) if found is not None else None
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        here = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if here.is_file():
            return str(here)
        found = newest_checkpoint(runs)
        if found is None:
            raise FileNotFoundError(
                f"ckpt_path=last: no checkpoints/last.ckpt under {runs}; train first or pass "
                "ckpt_path=/path/to/file.ckpt"
            )
        return str(found)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return ckpt_path


def _saved_step(path: Path) -> int | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True).get("global_step")


def build_module(cfg: DictConfig) -> DerainModule:
    return DerainModule(
        model=cfg.model,
        loss=cfg.get("loss"),
        optimizer=cfg.get("optimizer"),
        scheduler=cfg.get("scheduler") or None,  # scheduler=none: {}, a constant learning rate
        **cfg.get("module", {}),
    )


def _run_test(
    trainer: pl.Trainer,
    module: DerainModule,
    datamodule,
    report: TestReport,
    out_dir: Path,
    metadata: dict[str, Any],
) -> dict[str, Path]:
    """Tests `module` with `trainer` (whose callbacks include `report`) and, on the first
    process, writes the report and logs its table and panel."""
    trainer.test(module, datamodule=datamodule, verbose=False)
    metadata = {**metadata, "precision": module.scored_precision}
    paths = {}
    if trainer.is_global_zero:
        paths = report.write(out_dir, metadata)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                wandb.log_test_report(logger, report.per_image, paths.get("panel"))
        print(markdown_table(report.results, metadata.get("title")))
    return paths


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fits (and by default tests) the configured model; returns metrics and output paths."""
    try:
        return _train(cfg)
    finally:
        wandb.finish_run()


def _start(cfg: DictConfig) -> Path:
    """What every run does first (console, allocator, seeds); returns its output folder."""
    quiet_third_party()
    if cfg.get("retain_freed_memory", False):
        retain_freed_memory()
    pl.seed_everything(cfg.seed, workers=True)
    return Path(cfg.paths.output_dir)


def _train(cfg: DictConfig) -> dict[str, Any]:
    out_dir = _start(cfg)
    if cfg.get("skip_finished", False):  # a point of a study (derain.training.finished)
        done = finished.finished_result(cfg, out_dir)
        if done is not None:
            log.info("skipped: %s holds this run's results (%s)", out_dir, finished.FINISHED_FILE)
            return done
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    if not loggers:  # nothing to record learning rates to (Lightning refuses the monitor then)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    report = TestReport(panel_images=module.hparams.panel_images)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, report], logger=loggers or False
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg, requeued=slurm_requeued())
    last = out_dir / "checkpoints" / "last.ckpt"
    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        # a stop between epochs (max_steps, max_time) would leave last.ckpt behind the weights
        # that are tested below; write it so both refer to the same network. save_checkpoint is
        # a collective: rank 0, which writes the file, decides for every process
        behind = trainer.is_global_zero and _saved_step(last) != trainer.global_step
        if trainer.global_step > 0 and trainer.strategy.broadcast(behind, src=0):
            trainer.save_checkpoint(last, weights_only=False)  # resumable: optimiser, loops
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}

    result: dict[str, Any] = {"metrics": metrics, "output_dir": str(out_dir)}
    if cfg.get("test", True):
        tester = trainer
        if trainer.world_size > 1:
            # a distributed sampler pads the test set with repeats, which would bias the
            # per-image means: score on the first process alone, on one device
            trainer.strategy.barrier()
            # leave the process group so that metrics computed below do not wait for the
            # other processes, which stop here
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
            if not trainer.is_global_zero:
                return result
            _use_idle_cores(trainer.world_size)
            tester = instantiate(
                cfg.trainer,
                devices=1,
                num_nodes=1,
                strategy="auto",
                callbacks=[report],
                logger=loggers or False,
            )
        metadata = {
            "title": f"{cfg.task_name}: {cfg.run_name}",
            "ckpt_path": str(last) if last.is_file() else ckpt_path,
            "metric_channel": module.hparams.metric_channel,
            "self_ensemble": module.hparams.self_ensemble,
            "model": OmegaConf.to_container(cfg.model, resolve=True),
        }
        paths = _run_test(tester, module, datamodule, report, out_dir, metadata)
        result["paths"] = {k: str(v) for k, v in paths.items()}
        result["test"] = report.results
        if cfg.get("skip_finished", False) and paths:
            finished.record_finished(cfg, result)
    return result


_USER_THREADS = os.environ.get("OMP_NUM_THREADS")
"""The user's OMP_NUM_THREADS, read before Lightning's DDP sets it (to cores / processes)."""


def _use_idle_cores(world_size: int) -> None:
    """After a DDP run, the first process tests alone: on CPU, give it the threads the other
    processes had, unless the user pinned OMP_NUM_THREADS."""
    if _USER_THREADS is None:
        torch.set_num_threads(max(1, torch.get_num_threads() * world_size))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Scores a checkpoint on every test set of the data config; writes the result tables."""
    out_dir = _start(cfg)
    # a model name, folder or file (null: the bundled model); `last`: this task's newest run
    source = resolve_ckpt_path("last", cfg) if cfg.ckpt_path == "last" else cfg.ckpt_path
    ckpt_path = resolve_model(source)
    # unknown self_ensemble / eval_precision values fail here, before any image is read
    stored = load_network(ckpt_path)
    module = DerainModule.from_network(
        stored,
        metric_channel=cfg.metric_channel,
        panel_images=cfg.panel_images,
        self_ensemble=cfg.get("self_ensemble"),
        eval_precision=cfg.get("eval_precision", "32-true"),
        max_tile=stored.chosen_max_tile(cfg.get("max_tile", "model")),
    )
    optimize(
        module.model,
        channels_last=cfg.get("channels_last"),
        compile=bool(cfg.get("compile", False)),
        freeze=True,
    )
    report = TestReport(
        panel_images=cfg.panel_images, images_dir=out_dir / "images" if cfg.save_images else None
    )
    datamodule = instantiate(cfg.data)
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[report])
    metadata = {
        "title": f"{cfg.task_name}: {_model_label(ckpt_path)}",
        "ckpt_path": str(ckpt_path),
        "metric_channel": cfg.metric_channel,
        "self_ensemble": module.hparams.self_ensemble,
        "model": stored.config,
    }
    paths = _run_test(trainer, module, datamodule, report, out_dir, metadata)
    return {"test": report.results, "paths": {k: str(v) for k, v in paths.items()}}


def _model_label(path: Path) -> str:
    """A model folder's name (bundled models, Hub downloads), else the checkpoint's file name."""
    return path.parent.name if path.name == WEIGHTS_FILE else path.name

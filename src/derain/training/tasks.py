"""The train task behind `derain-train` (`run`: config in, results out), and what derain-eval's
task (`derain.evaluation.evaluate`) shares with it: starting a run, loggers, checkpoints, testing.

    cfg = compose("train", overrides=["experiment=demo"])
    result = derain.training.tasks.run(cfg)   # metrics, output_dir, paths, test, optimized
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from derain.evaluation.tables import markdown_table
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


def load_initial_weights(module: DerainModule, source: str) -> None:
    """Starts `module`'s network from the weights of a trained one (`init_weights=`: fine-tune).

    Args:
        source: what `derain.inference.load_network` reads: a bundled model's name, a model
            folder, a derain `.ckpt`/`.safetensors` file or one of the authors' checkpoints.

    Raises:
        ValueError: nothing to read at `source`, or a network of another shape than `model=`
            builds; the message names init_weights and the settings that differ.
    """
    from derain.inference.checkpoint import CheckpointError, load_network

    try:
        stored = load_network(source)
    except (FileNotFoundError, CheckpointError) as error:
        message = str(error).replace("ckpt_path=", "init_weights=")
        raise ValueError(f"init_weights={source}: {message}") from None
    try:
        module.model.load_state_dict(stored.model.state_dict())
    except RuntimeError:  # missing, unexpected or differently shaped tensors
        wanted, found = module.hparams.model, stored.config
        differ = {
            k: (wanted.get(k), found.get(k))
            for k in sorted({*wanted, *found} - {"_target_"})
            if wanted.get(k) != found.get(k)
        }
        raise ValueError(
            f"init_weights={source} holds a network of another shape than model= builds; "
            f"settings that differ (model=, init_weights): {differ}. Choose the model preset "
            "it was trained as."
        ) from None
    log.info("network initialised from %s", source)


def run_test(
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


def start_run(cfg: DictConfig) -> Path:
    """What every run does first (console, allocator, seeds); returns its output folder."""
    quiet_third_party()
    if cfg.retain_freed_memory:
        retain_freed_memory()
    pl.seed_everything(cfg.seed, workers=True)
    return Path(cfg.paths.output_dir)


def progress_bar_setting(trainer_cfg: DictConfig, callbacks: list[Callback]) -> dict[str, bool]:
    """`enable_progress_bar=False` when the run's callbacks hold no progress bar
    (`callbacks.progress_bar=null`) and the trainer config leaves it unset: dropping derain's bar
    means no bar, not Lightning's own in its place (a log file full of redrawn lines)."""
    if trainer_cfg.get("enable_progress_bar") is not None:
        return {}
    if any(isinstance(callback, ProgressBar) for callback in callbacks):
        return {}
    return {"enable_progress_bar": False}


def _train(cfg: DictConfig) -> dict[str, Any]:
    out_dir = start_run(cfg)
    if cfg.get("skip_finished", False):  # a point of a study (derain.training.finished)
        done = finished.finished_result(cfg, out_dir)
        if done is not None:
            log.info("skipped: %s holds this run's results (%s)", out_dir, finished.FINISHED_FILE)
            return done
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg, requeued=slurm_requeued())
    if cfg.get("init_weights") and cfg.train:
        if ckpt_path:  # a resumed run carries on from its own checkpoint
            log.info("init_weights=%s not used: resuming from %s", cfg.init_weights, ckpt_path)
        else:
            load_initial_weights(module, str(cfg.init_weights))
    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    if not loggers:  # nothing to record learning rates to (Lightning refuses the monitor then)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    report = TestReport(panel_images=module.hparams.panel_images)
    bar = progress_bar_setting(cfg.trainer, callbacks)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, report], logger=loggers or False, **bar
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    last = out_dir / "checkpoints" / "last.ckpt"
    if cfg.train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        # a stop between epochs (max_steps, max_time) would leave last.ckpt behind the weights
        # that are tested below; write it so both refer to the same network. save_checkpoint is
        # a collective: rank 0, which writes the file, decides for every process
        behind = trainer.is_global_zero and _saved_step(last) != trainer.global_step
        if trainer.global_step > 0 and trainer.strategy.broadcast(behind, src=0):
            trainer.save_checkpoint(last, weights_only=False)  # resumable: optimiser, loops
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}

    result: dict[str, Any] = {"metrics": metrics, "output_dir": str(out_dir)}
    if cfg.test:
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
                **bar,
            )
        metadata = {
            "title": f"{cfg.task_name}: {cfg.run_name}",
            "ckpt_path": str(last) if last.is_file() else ckpt_path,
            "metric_channel": module.hparams.metric_channel,
            "self_ensemble": module.hparams.self_ensemble,
            "model": OmegaConf.to_container(cfg.model, resolve=True),
        }
        paths = run_test(tester, module, datamodule, report, out_dir, metadata)
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


def run(cfg: DictConfig) -> dict[str, Any]:
    """`train(cfg)` after `check_sweep_launch`; the result adds `optimized`, the value of
    `cfg.optimized_metric` that sweepers (Optuna) optimise (`optimized_value`)."""
    check_sweep_launch(cfg)
    result = train(cfg)
    return {**result, "optimized": optimized_value(cfg, result["metrics"], sweeping=_sweeping())}


def optimized_value(cfg: DictConfig, metrics: dict[str, float], sweeping: bool) -> float | None:
    """The logged value of `cfg.optimized_metric` (None when that is null, or nothing was
    trained). A name that was not logged raises in a sweep (a sweeper would optimise nothing)
    and is logged as a warning in a single run; both list the metrics that were logged."""
    name = cfg.optimized_metric
    if name is None or not cfg.train:
        return None
    if name in metrics:
        return float(metrics[name])
    message = (
        f"optimized_metric={name} was not logged by this run; it logged "
        f"{', '.join(sorted(metrics)) or 'no metrics'}: name one of those (e.g. "
        "optimized_metric=val/psnr), or optimized_metric=null"
    )
    if sweeping:
        raise ValueError(message)
    log.warning(message)
    return None


def _sweeping() -> bool:
    """Whether this run is a job of a Hydra multirun (`-m`): sweepers read `run`'s value."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_sweep_launch(cfg: DictConfig) -> None:
    """Refuses a sampler-driven sweep (Optuna) whose trials would each start DDP processes.

    Lightning starts the other processes by running the command line again; under `-m` each of
    them runs the sweep again, and a sampler proposes its trials anew there, so the processes
    would not train the same trial. Hydra's basic sweeper lists its jobs in a fixed order, so
    its sweeps (e.g. over trainer.devices) do line up.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    sweeper = str(hydra_cfg.sweeper.get("_target_", ""))
    if hydra_cfg.mode != RunMode.MULTIRUN or sweeper.endswith("BasicSweeper"):
        return
    trainer = cfg.trainer
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    strategy = str(trainer.get("strategy", "auto"))
    if strategy.startswith("ddp") and (str(devices) not in ("1", "auto") or nodes != 1):
        raise ValueError(
            f"this sweep ({sweeper.rsplit('.', 1)[-1]}) cannot train each trial on several "
            f"processes (trainer.strategy={strategy}, trainer.devices={devices}, "
            f"trainer.num_nodes={nodes}): Lightning would start the other processes by running "
            "the sweep again. Run the trials on one device, e.g. for the demo add "
            "`trainer=cpu data.batch_size=8`."
        )

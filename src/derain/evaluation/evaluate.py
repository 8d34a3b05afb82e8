"""The eval task behind `derain-eval`: scores a model on every test set of a data config, with
the papers' protocol, from a config (conf/eval.yaml) in Python or a notebook:

    cfg = compose("eval", overrides=["ckpt_path=model.ckpt", "data=rain13k", "data.root=/data"])
    result = derain.evaluation.evaluate.run(cfg)   # {"test": per-set scores, "paths": files}

The run is a Lightning test of `derain.training.module.DerainModule` (the same code that tests
after training), so the result tables are those of derain-train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from derain.inference import load_network
from derain.inference.settings import InferenceSettings
from derain.inference.sources import WEIGHTS_FILE, resolve_model
from derain.models import optimize
from derain.training.module import DerainModule
from derain.training.report import TestReport
from derain.training.tasks import instantiate_loggers, resolve_ckpt_path, run_test, start_run

_USED = ("ckpt_path", "precision", "max_tile", "self_ensemble")
"""The inference settings an evaluation uses; the machine is the trainer's."""
_HINTS = {
    "device": "the trainer runs the test: choose the machine with trainer=cpu or trainer=gpu",
    "max_memory": "derain-eval tiles by max_tile alone (tests compare whole images)",
}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Scores `cfg.ckpt_path` on every test set of `cfg.data`; writes results.md,
    results.json, per_image.csv and panel.png into the run folder.

    Returns {"test": the scores per test set, "paths": the files written, by kind}.
    """
    settings = InferenceSettings.from_config(cfg)
    settings.check_applies(_USED, "derain-eval", _HINTS)
    out_dir = start_run(cfg)
    # a model name, folder or file (null: the bundled model); `last`: this task's newest run
    source = settings.ckpt_path
    ckpt_path = resolve_model(resolve_ckpt_path("last", cfg) if source == "last" else source)
    stored = load_network(ckpt_path)
    module = DerainModule.from_network(
        stored,
        metric_channel=cfg.metric_channel,
        panel_images=cfg.panel_images,
        self_ensemble=settings.self_ensemble,
        eval_precision=settings.precision,
        max_tile=stored.chosen_max_tile(settings.max_tile),
    )
    optimize(module.model, channels_last=cfg.channels_last, compile=bool(cfg.compile), freeze=True)
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
    paths = run_test(trainer, module, datamodule, report, out_dir, metadata)
    return {"test": report.results, "paths": {k: str(v) for k, v in paths.items()}}


def _model_label(path: Path) -> str:
    """A model folder's name (bundled models, Hub downloads), else the checkpoint's file name."""
    return path.parent.name if path.name == WEIGHTS_FILE else path.name

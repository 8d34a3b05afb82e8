"""`derain-predict`: derain real photos — an image, a folder (optionally recursive) or a glob.

    derain-predict ckpt_path=model.ckpt input=photos/ output=derained/
    derain-predict ckpt_path=model.ckpt input='shots/**/*.jpg' output=out/ format=jpg
    derain-predict ckpt_path=... input=... output=... self_ensemble=true save_rain=true

Images of any size are derained at full resolution, in tiles when one pass would not fit
`max_memory`. Outputs keep the input's name (stem) and size; existing ones are skipped unless
`overwrite=true`; an unreadable image is reported and skipped, and the exit code is 1 if any failed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from derain.cli import make_console
from derain.data.io import read_image
from derain.folders.predict import PredictJob, find_images, plan_jobs, write_image_atomically
from derain.inference import Restorer, load
from derain.models import optimize
from derain.paths import config_dir
from derain.runtime.memory import retain_freed_memory

_IMAGE_ERRORS = (OSError, ValueError, MemoryError, torch.cuda.OutOfMemoryError)
"""What one image may raise (unreadable, unwritable, too large) without stopping the run."""


@dataclass
class PredictSummary:
    """What a run did: derained (`done`, of which `tiled` in tiles), `skipped` (outputs existed)
    and `failed` (input, reason) images; `seconds` spent deraining."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    tiled: int = 0
    seconds: float = 0.0


class ImagesPerSecondColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        label = "– images/s" if speed is None else f"{speed:.2f} images/s"
        return Text(label, style="progress.data.speed")


def derain_file(restorer: Restorer, job: PredictJob) -> bool:
    """Derains `job.source` into `job.output` (and `job.rain`); True when it went in tiles."""
    image = read_image(job.source)
    if job.rain is None:
        restored, rain = restorer(image), None
    else:
        restored, rain = restorer.separate(image)
    write_image_atomically(job.output, restored)
    if rain is not None:
        write_image_atomically(job.rain, rain)
    return restorer.last_plan.tiles > 1


def run(cfg: DictConfig, console: Console) -> PredictSummary:
    """Derains every image `cfg.input` names into `cfg.output` (see conf/predict.yaml)."""
    for setting in ("input", "output"):
        if OmegaConf.is_missing(cfg, setting):
            raise ValueError(
                f"{setting}= is required: derain-predict input=PATH output=DIR [ckpt_path=MODEL]"
            )
    images = find_images(str(cfg.input), recursive=cfg.recursive, exclude=str(cfg.output))
    jobs = plan_jobs(images, str(cfg.output), str(cfg.format), cfg.save_rain)
    summary = PredictSummary()
    pending = []
    for job in jobs:
        if not cfg.overwrite and all(path.exists() for path in job.outputs()):
            summary.skipped.append(job.source)
        else:
            pending.append(job)
    if summary.skipped:
        console.print(
            f"skipping {len(summary.skipped)} image(s) whose outputs exist in {cfg.output} "
            "(overwrite=true derains them again)",
            markup=False,
        )
    if not pending:
        return summary
    if cfg.get("retain_freed_memory", False):
        retain_freed_memory()
    restorer = load(
        cfg.ckpt_path,
        device=cfg.device,
        tile=cfg.tile,
        overlap=cfg.overlap,
        self_ensemble=cfg.self_ensemble,
        precision=cfg.precision,
        max_memory=cfg.max_memory,
        max_tile=cfg.get("max_tile", "model"),
    )
    optimize(
        restorer.model,
        channels_last=cfg.get("channels_last"),
        compile=bool(cfg.get("compile", False)),
        freeze=True,
    )
    console.print(
        f"deraining {len(pending)} image(s) from {cfg.input} into {cfg.output} with "
        f"{cfg.ckpt_path or 'the bundled model'} on {restorer.device} ({cfg.precision}, max_memory "
        f"{restorer.max_memory / 1e9:.2f} GB{', self-ensemble' if cfg.self_ensemble else ''})",
        markup=False,
        highlight=False,
    )
    start = time.perf_counter()
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        ImagesPerSecondColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("deraining", total=len(pending))
        for job in pending:
            progress.update(task, description=str(job.relative))
            try:
                summary.tiled += derain_file(restorer, job)
            except _IMAGE_ERRORS as err:
                summary.failed.append((job.source, str(err)))
                progress.console.print(
                    f"[red]failed[/] {escape(f'{job.source}: {err}')}", highlight=False
                )
            else:
                summary.done.append(job.source)
            progress.advance(task)
        progress.update(task, description="deraining")
    summary.seconds = time.perf_counter() - start
    return summary


def print_summary(summary: PredictSummary, console: Console) -> None:
    table = Table(title="derain-predict")
    for column in ("done", "tiled", "skipped", "failed", "seconds", "images/s"):
        table.add_column(column, justify="right")
    rate = len(summary.done) / summary.seconds if summary.seconds else 0.0
    table.add_row(
        str(len(summary.done)),
        str(summary.tiled),
        str(len(summary.skipped)),
        str(len(summary.failed)),
        f"{summary.seconds:.1f}",
        f"{rate:.2f}",
    )
    console.print(table)
    for source, reason in summary.failed:
        console.print(f"[red]failed[/] {escape(f'{source}: {reason}')}", highlight=False)


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="predict")
def _app(cfg: DictConfig) -> None:
    console = make_console()
    try:
        summary = run(cfg, console)
    except (FileNotFoundError, ValueError) as err:
        # the message names the file or setting and the fix; a traceback would only bury it
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]derain-predict: error:[/] {escape(str(err))}", highlight=False
        )
        sys.exit(1)
    print_summary(summary, console)
    if summary.failed:
        sys.exit(1)


def main() -> None:
    _app()


if __name__ == "__main__":
    main()

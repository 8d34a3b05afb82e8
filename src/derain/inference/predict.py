"""The predict task behind `derain-predict`: derain real photos — an image, a folder
(optionally recursive) or a glob — from a config (conf/predict.yaml) in Python or a notebook:

    cfg = compose("predict", overrides=["input=photos", "output=derained"])
    summary = derain.inference.predict.run(cfg)      # a PredictSummary

Images of any size are derained at full resolution, in tiles when one pass would not fit
`max_memory`. Outputs keep the input's name, size and format (`format=` changes it), its colour
profile, EXIF, alpha, grey and bit depth; existing ones are skipped unless `overwrite=true`; an
unreadable image is reported and skipped (`PredictSummary.failed`; the command's exit code is 1
if any failed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

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

from derain.inference.files import PredictJob, check_writable, plan_jobs, scan_images
from derain.inference.photo_files import DEFAULT_QUALITY, check_quality
from derain.inference.restorer import DerainedPhoto, Restorer, load, resolve_device
from derain.inference.settings import InferenceSettings
from derain.models import optimize
from derain.runtime.console import make_console

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
    """The images' speed on the images' row (blank on the tiles' row)."""

    def render(self, task) -> Text:
        if not task.fields.get("images"):
            return Text("")
        return Text(speed_label(task.finished_speed or task.speed), style="progress.data.speed")


def speed_label(images_per_second: float | None) -> str:
    """ "2.50 images/s", or seconds per image when under one a second ("437 s/image")."""
    if not images_per_second:
        return "– images/s"
    if images_per_second >= 1:
        return f"{images_per_second:.2f} images/s"
    seconds = 1 / images_per_second
    return f"{seconds:.1f} s/image" if seconds < 100 else f"{seconds:.0f} s/image"


def derain_file(
    restorer: Restorer, job: PredictJob, quality: int = DEFAULT_QUALITY, progress=None
) -> DerainedPhoto:
    """Derains `job.source` into `job.output` (and `job.rain`), keeping the file's format,
    profile, EXIF, alpha, grey and bit depth where the output's format can hold them."""
    return restorer.derain_file(
        job.source, job.output, rain_output=job.rain, quality=quality, progress=progress
    )


def run(cfg: DictConfig, console: Console | None = None) -> PredictSummary:
    """Derains every image `cfg.input` names into `cfg.output` (see conf/predict.yaml), showing
    progress on `console` (the terminal by default); returns what was done."""
    console = console or make_console()
    settings = InferenceSettings.from_config(cfg)  # settings first, then the folder, the model
    for setting in ("input", "output"):
        if OmegaConf.is_missing(cfg, setting):
            raise ValueError(
                f"{setting}= is required: derain-predict input=PATH output=DIR [ckpt_path=MODEL]"
            )
    found = scan_images(str(cfg.input), recursive=cfg.recursive, exclude=str(cfg.output))
    for note in found.notes(str(cfg.input), cfg.output):
        console.print(note, markup=False, highlight=False)
    jobs = plan_jobs(found.images, str(cfg.output), cfg.format, cfg.save_rain)
    renamed = [job for job in jobs if job.renamed]
    if renamed:
        console.print(
            f"{len(renamed)} input(s) share a name with another that differs only in its "
            f"extension; their outputs keep the extension: "
            + ", ".join(f"{job.relative} → {job.output.name}" for job in renamed[:5])
            + (f" ... and {len(renamed) - 5} more" if len(renamed) > 5 else ""),
            markup=False,
            highlight=False,
        )
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
    resolve_device(settings.device)
    check_quality(int(cfg.quality))
    check_writable(cfg.output)  # before any work, not after the first image
    restorer = load(settings=settings, retain_freed_memory=bool(cfg.retain_freed_memory))
    optimize(
        restorer.model, channels_last=cfg.channels_last, compile=bool(cfg.compile), freeze=True
    )
    ensemble = ", self-ensemble" if restorer.ensemble is not None else ""
    console.print(
        f"deraining {len(pending)} image(s) from {cfg.input} into {cfg.output} with "
        f"{settings.ckpt_path or 'the bundled model'} on {restorer.device} ({settings.precision}, "
        f"max_memory {restorer.max_memory / 1e9:.2f} GB{ensemble})",
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
        task = progress.add_task("deraining", total=len(pending), images=True)
        passes = progress.add_task("", total=None, visible=False)
        for job in pending:
            progress.update(task, description=str(job.relative))
            progress.reset(passes, total=None, visible=False)
            try:
                result = derain_file(
                    restorer,
                    job,
                    int(cfg.quality),
                    progress=_tile_reporter(progress, passes, restorer, str(job.relative)),
                )
            except _IMAGE_ERRORS as err:
                summary.failed.append((job.source, str(err)))
                progress.console.print(
                    f"[red]failed[/] {escape(f'{job.source}: {err}')}", highlight=False
                )
            else:
                summary.done.append(job.source)
                summary.tiled += restorer.last_plan.tiles > 1
                if result.lost:
                    progress.console.print(
                        f"{job.output}: the {job.output.suffix} format cannot hold the input's "
                        f"{' or '.join(result.lost)} (format=same keeps them)",
                        markup=False,
                        highlight=False,
                    )
            progress.advance(task)
        progress.update(task, description="deraining")
        progress.update(passes, visible=False)
    summary.seconds = time.perf_counter() - start
    return summary


def _tile_reporter(progress: Progress, task, restorer: Restorer, name: str):
    """A `Restorer` progress callback that shows the tiles (or passes) of one image done, with
    their own time estimate: a large photo takes minutes on a CPU."""

    def report(done: int, total: int) -> None:
        tiles = restorer.last_plan.tiles if restorer.last_plan is not None else 1
        if total <= 1:
            return
        where = f"{done * tiles // total}/{tiles} tiles" if tiles > 1 else f"{done}/{total} passes"
        # drawn at once, not at the next timed refresh: a fast machine finishes small images
        # between two refreshes, and a tile is never so short that drawing it costs
        progress.update(
            task,
            total=total,
            completed=done,
            description=f"  {name}: {where}",
            visible=True,
            refresh=True,
        )

    return report


def print_summary(summary: PredictSummary, console: Console) -> None:
    table = Table(title="derain-predict")
    for column in ("done", "tiled", "skipped", "failed", "seconds", "speed"):
        table.add_column(column, justify="right")
    rate = len(summary.done) / summary.seconds if summary.seconds and summary.done else None
    table.add_row(
        str(len(summary.done)),
        str(summary.tiled),
        str(len(summary.skipped)),
        str(len(summary.failed)),
        f"{summary.seconds:.1f}",
        speed_label(rate),
    )
    console.print(table)
    for source, reason in summary.failed:
        console.print(f"[red]failed[/] {escape(f'{source}: {reason}')}", highlight=False)

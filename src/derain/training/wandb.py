"""What derain sends to Weights & Biases beyond Lightning's `WandbLogger` (metrics,
hyper-parameters): image panels, the test's per-image table, and closing a run.

The `wandb` package is imported by Lightning's logger when a run uses `logger=wandb`; nothing
here imports it otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import WandbLogger

PANEL_CAPTION = "rainy | restored | clean | rain"

PER_IMAGE_COLUMNS = ["set", "name", "input_psnr", "psnr", "ssim"]
"""The columns of the test's per-image table (`derain.training.report.TestReport.per_image`)."""


def log_panel(logger: WandbLogger, key: str, panel: np.ndarray, step: int) -> None:
    """Logs an H×W×3 uint8 image panel under `key` at `step`."""
    logger.log_image(key=key, images=[panel], step=step, caption=[PANEL_CAPTION])


def log_test_report(
    logger: WandbLogger, per_image: list[dict[str, Any]], panel: Path | None
) -> None:
    """Logs the test's per-image scores as the table `test/per_image` and, when one was
    written, its panel image as `test/panel`."""
    rows = [[row[c] for c in PER_IMAGE_COLUMNS] for row in per_image]
    logger.log_table("test/per_image", columns=PER_IMAGE_COLUMNS, data=rows)
    if panel is not None:
        logger.log_image("test/panel", images=[str(panel)])


def finish_run() -> None:
    """Closes the W&B run a `WandbLogger` left open in this process, if any.

    Each job of a `-m` sweep (and each variant of an ablation study) trains in the same
    process: without this the next job's `WandbLogger` would attach to the previous job's run.
    """
    wandb = sys.modules.get("wandb")  # loaded only if a WandbLogger ran
    if wandb is not None and wandb.run is not None:
        wandb.finish()

"""The test report: what a test run produced, collected from the module's test steps and written
as result tables, an example panel and (optionally) the restored images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from derain.data.io import write_image
from derain.evaluation.panels import make_panel
from derain.evaluation.tables import write_results
from derain.training.module import DerainModule, TestBatch


class TestReport(Callback):
    """Collects the per-set scores, per-image rows and example panel rows of `trainer.test`.

    Args:
        panel_images: how many examples the panel shows, shared out over the test sets.
        images_dir: when set, every restored image is written to `images_dir/<set>/<name>.png`.

    After `trainer.test`: `results` (per set: the means of every test metric and `images`) and
    `per_image` (one row per image: set, name, psnr, ssim, input_psnr [, single_psnr]).
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, panel_images: int = 4, images_dir: str | Path | None = None) -> None:
        self.panel_images = panel_images
        self.images_dir = Path(images_dir) if images_dir is not None else None
        self.results: dict[str, dict[str, float]] = {}
        self.per_image: list[dict[str, Any]] = []
        self._examples: dict[str, list[tuple[list[Tensor], str]]] = {}

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.results, self.per_image, self._examples = {}, [], {}

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: TestBatch,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for i, name in enumerate(outputs.names):
            row = {
                "set": outputs.set_name,
                "name": name,
                "psnr": outputs.psnr[i],
                "ssim": outputs.ssim[i],
                "input_psnr": outputs.input_psnr[i],
            }
            if outputs.single_psnr is not None:
                row["single_psnr"] = outputs.single_psnr[i]
            self.per_image.append(row)
        self._keep_examples(outputs, sets=len(pl_module.test_set_names))
        if self.images_dir is not None:
            folder = self.images_dir / outputs.set_name
            folder.mkdir(parents=True, exist_ok=True)
            for name, image in zip(outputs.names, outputs.restored, strict=True):
                write_image(folder / f"{Path(name).stem}.png", image.permute(1, 2, 0).cpu().numpy())

    def _keep_examples(self, outputs: TestBatch, sets: int) -> None:
        per_set = max(1, self.panel_images // sets)
        examples = self._examples.setdefault(outputs.set_name, [])
        for i in range(min(len(outputs.names), per_set - len(examples))):
            rainy, restored = outputs.rainy[i], outputs.restored[i]
            row = [rainy, restored, outputs.clean[i], (rainy - restored).abs().clamp(0, 1)]
            title = f"{outputs.set_name}: {outputs.input_psnr[i]:.1f} -> {outputs.psnr[i]:.1f} dB"
            examples.append(([t.cpu() for t in row], title))

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: DerainModule) -> None:
        # callbacks' epoch-end hooks run before the module's, which resets the metrics
        self.results = pl_module.test_set_scores()

    def panel(self) -> np.ndarray | None:
        """Examples of every test set (rainy | restored | clean | |rainy − restored|), or None."""
        examples = [e for rows in self._examples.values() for e in rows]
        if not examples:
            return None
        return make_panel([row for row, _ in examples], row_titles=[t for _, t in examples])

    def write(self, out_dir: str | Path, metadata: dict[str, Any]) -> dict[str, Path]:
        """results.md, results.json, per_image.csv and panel.png in `out_dir`
        (`derain.evaluation.tables.write_results`)."""
        return write_results(out_dir, self.results, self.per_image, metadata, self.panel())

"""The Lightning DataModule: one training set and any number of named validation/test sets.

Configured from `conf/data/*.yaml` (`_target_: derain.data.DerainDataModule`). Each set is a
`PairedSet` (a folder or list file under `root`, any layout `find_pairs` knows) or a
`SyntheticSet` (rain rendered on the photos bundled with scikit-image; needs no files).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning import LightningDataModule
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import ConcatDataset, DataLoader, Dataset, RandomSampler, Subset

from derain.data.datasets import (
    Augment,
    PairedDataset,
    SyntheticEvalDataset,
    SyntheticTrainDataset,
    evenly_spaced,
)
from derain.data.layouts import find_pairs
from derain.data.pairs import DatasetNotFoundError, RainySide, check_pair_sizes
from derain.data.photos import Split
from derain.data.sampling import PatchSchedule, ProgressiveBatchSampler

_MAX_DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class PairedSet:
    """A data set on disk.

    Attributes:
        path: folder (or list file) relative to the DataModule's `root`, or absolute.
        layout: a `find_pairs` layout name, or "auto".
        rainy_side: for side-by-side releases, the rainy half ("left"/"right").
    """

    path: str
    layout: str = "auto"
    rainy_side: RainySide = "left"


@dataclass(frozen=True)
class SyntheticSet:
    """Synthetic rain on the bundled photos of one split (see `derain.data.photos`).

    Attributes:
        split: "train", "val" or "test" photos.
        presets: rain presets; a training set picks one per item, an evaluation set holds
            every photo once per preset and draw.
        draws: evaluation only: rain draws per photo and preset.
        max_side: evaluation only: longest image side in pixels.
        tile_stride: training only: spacing of the tiles patches are cut around.
    """

    split: Split = "train"
    presets: tuple[str, ...] = ("light",)
    draws: int = 1
    max_side: int = 512
    tile_stride: int = 64


DataSpec = PairedSet | SyntheticSet | str


class DerainDataModule(LightningDataModule):
    """Rainy/clean batches for training, validation and testing.

    A batch is a dict: "rainy" and "clean" B×3×H×W float32 in [0, 1], "rain" (the rain layer,
    present only for sets that have one for every pair) and "name" (list of B strings).
    Training batches are random `patch_size`² patches with flips/rotations; validation and test
    batches are single whole images, unaugmented. `val_dataloader()`/`test_dataloader()` return
    one loader per named set, in the order of `val_set_names`/`test_set_names` (Lightning's
    `dataloader_idx` indexes these lists).

    Args:
        train: the training set (None: no training).
        val: named validation sets.
        test: named test sets.
        root: folder that relative `PairedSet.path`s are under (config key `data.root`).
        patch_size: training patch side in pixels (without a progressive schedule).
        batch_size: training batch size (without a progressive schedule).
        patch_sizes: progressive schedule: patch side per stage (overrides `patch_size`).
        batch_sizes: progressive schedule: batch size per stage (overrides `batch_size`).
        milestones: progressive schedule: iteration at which each stage after the first starts.
        augment: training flips: "d4" (8 flips/rotations), "flips" (left-right and top-bottom,
            which keep streaks' orientation), "hflip" or "none".
        num_workers: loader processes; None takes one per CPU core, at most 8.
        pin_memory: pin batches in page-locked memory; None pins when CUDA is available.
        limit: use at most this many pairs/tiles/images per set, evenly spaced (quick runs).
        seed: fixes every crop, flip and rain draw (items depend on seed and index only).
        check_images: read every image header during `setup` so that unreadable files and
            mismatched pairs fail before training starts.
    """

    def __init__(
        self,
        train: DataSpec | None = None,
        val: Mapping[str, DataSpec] | None = None,
        test: Mapping[str, DataSpec] | None = None,
        root: str | os.PathLike | None = None,
        patch_size: int = 128,
        batch_size: int = 8,
        patch_sizes: Sequence[int] | None = None,
        batch_sizes: Sequence[int] | None = None,
        milestones: Sequence[int] | None = None,
        augment: Augment = "d4",
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        limit: int | None = None,
        seed: int = 0,
        check_images: bool = True,
    ) -> None:
        super().__init__()
        self.train_spec = _as_spec(train, "data.train") if train is not None else None
        self.val_specs = {name: _as_spec(s, f"data.val.{name}") for name, s in (val or {}).items()}
        self.test_specs = {
            name: _as_spec(s, f"data.test.{name}") for name, s in (test or {}).items()
        }
        self.root = Path(root).expanduser() if root is not None else None
        if patch_sizes is not None or batch_sizes is not None:
            self.schedule = PatchSchedule(
                tuple(patch_sizes or ()), tuple(batch_sizes or ()), tuple(milestones or ())
            )
        else:
            self.schedule = PatchSchedule.constant(patch_size, batch_size)
        self.augment = augment
        self.num_workers = _default_workers() if num_workers is None else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.limit = limit
        self.seed = seed
        self.check_images = check_images
        self.train_set: Dataset | None = None
        self.val_sets: list[Dataset] = []
        self.test_sets: list[Dataset] = []
        self.batch_sampler: ProgressiveBatchSampler | None = None
        self._start_iteration = 0

    @property
    def val_set_names(self) -> list[str]:
        """Names of the validation sets, in dataloader order."""
        return list(self.val_specs)

    @property
    def test_set_names(self) -> list[str]:
        """Names of the test sets, in dataloader order."""
        return list(self.test_specs)

    def setup(self, stage: str | None = None) -> None:
        """Find and check the files of the sets `stage` needs ("fit", "validate", "test")."""
        if stage in ("fit", None) and self.train_spec is not None and self.train_set is None:
            self.train_set = self._build(self.train_spec, "data.train", training=True)
        if stage in ("fit", "validate", None) and not self.val_sets:
            self.val_sets = [
                self._build(spec, f"data.val.{name}", training=False)
                for name, spec in self.val_specs.items()
            ]
        if stage in ("test", None) and not self.test_sets:
            self.test_sets = [
                self._build(spec, f"data.test.{name}", training=False)
                for name, spec in self.test_specs.items()
            ]

    def set_iteration(self, iteration: int) -> None:
        """Move the progressive patch schedule to `iteration` (batches drawn so far)."""
        self._start_iteration = iteration
        if self.batch_sampler is not None:
            self.batch_sampler.set_iteration(iteration)

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError(
                "no training set: give data.train (a PairedSet or SyntheticSet) and call "
                "setup('fit') first"
            )
        sampler = RandomSampler(self.train_set, generator=torch.Generator().manual_seed(self.seed))
        # a set smaller than one batch would otherwise yield no batch at all
        drop_last = len(self.train_set) >= max(self.schedule.batch_sizes)
        self.batch_sampler = ProgressiveBatchSampler(sampler, self.schedule, drop_last=drop_last)
        self.batch_sampler.set_iteration(self._resume_iteration())
        return DataLoader(
            self.train_set,
            batch_sampler=self.batch_sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(dataset) for dataset in self.val_sets]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(dataset) for dataset in self.test_sets]

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        workers = min(self.num_workers, len(dataset))  # type: ignore[arg-type]
        return DataLoader(
            dataset,
            batch_size=1,
            shuffle=False,
            num_workers=workers,
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
        )

    def _resume_iteration(self) -> int:
        """Where the schedule starts: the trainer's progress when attached (so a resumed run
        continues its schedule), else the value given to `set_iteration`."""
        trainer = self.trainer
        if trainer is None:
            return self._start_iteration
        return max(self._start_iteration, trainer.global_step * trainer.accumulate_grad_batches)

    def _build(self, spec: PairedSet | SyntheticSet, key: str, training: bool) -> Dataset:
        if isinstance(spec, SyntheticSet):
            return self._build_synthetic(spec, training)
        path = self._resolve(spec, key)
        pairs = find_pairs(path, spec.layout, spec.rainy_side, check_images=False)
        pairs = evenly_spaced(pairs, self.limit)
        if self.check_images:
            check_pair_sizes(pairs)
        return PairedDataset(
            pairs,
            train=training,
            patch_size=self.schedule.patch_sizes[0],
            augment=self.augment,
            seed=self.seed,
        )

    def _build_synthetic(self, spec: SyntheticSet, training: bool) -> Dataset:
        if training:
            return SyntheticTrainDataset(
                presets=spec.presets,
                patch_size=self.schedule.patch_sizes[0],
                tile_stride=spec.tile_stride,
                augment=self.augment,
                seed=self.seed,
                limit=self.limit,
            )
        evaluation = ConcatDataset(
            [
                SyntheticEvalDataset(spec.split, preset, spec.draws, spec.max_side, self.seed)
                for preset in spec.presets
            ]
        )
        return Subset(evaluation, evenly_spaced(list(range(len(evaluation))), self.limit))

    def _resolve(self, spec: PairedSet, key: str) -> Path:
        path = Path(spec.path).expanduser()
        if path.is_absolute():
            if not path.exists():
                raise DatasetNotFoundError(f"{path} does not exist: check {key}.path")
            return path
        if self.root is None:
            raise DatasetNotFoundError(
                f"data.root is not set: pass data.root=/path/to/the/folder holding "
                f"{spec.path} ({key}.path is relative to it)"
            )
        if not self.root.is_dir():
            raise DatasetNotFoundError(
                f"data.root={self.root} is not a folder: pass data.root=/path/to/the/folder "
                f"holding {spec.path}"
            )
        if not (self.root / path).exists():
            raise DatasetNotFoundError(
                f"{self.root / path} does not exist: data.root={self.root} should hold "
                f"{spec.path} ({key}.path) — check data.root"
            )
        return self.root / path


def _as_spec(value: object, key: str) -> PairedSet | SyntheticSet:
    if isinstance(value, DictConfig) and OmegaConf.get_type(value) in (PairedSet, SyntheticSet):
        # Hydra's default instantiation stores dataclass results as structured DictConfigs
        value = OmegaConf.to_object(value)
    if isinstance(value, PairedSet | SyntheticSet):
        return value
    if isinstance(value, str | os.PathLike):
        return PairedSet(path=str(value))
    raise TypeError(
        f"{key} must be a path, a derain.data.PairedSet or a derain.data.SyntheticSet "
        f"(give _target_ in the config), got {type(value).__name__}"
    )


def _default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(_MAX_DEFAULT_WORKERS, cores or 1)

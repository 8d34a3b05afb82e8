"""The Lightning DataModule: one training set and any number of named validation/test sets.

Configured from `conf/data/*.yaml` (`_target_: derain.data.DerainDataModule`). Each set is a
`PairedSet` (a folder or list file under `root`, any layout `find_pairs` knows) or a
`SyntheticSet` (rain rendered on the photos bundled with scikit-image; needs no files).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from derain.data.checks import (
    BadSampleWarning,
    TooManyBadSamplesError,
    check_mode,
    describe_bad_files,
    max_bad_samples,
    scan_files,
)
from derain.data.datasets import (
    Augment,
    PairedDataset,
    SyntheticEvalDataset,
    SyntheticTrainDataset,
    evenly_spaced,
)
from derain.data.io import ImageReadError
from derain.data.layouts import find_pairs
from derain.data.pairs import DatasetNotFoundError, Pair, RainySide, check_pair_sizes
from derain.data.photos import Split, photo_list
from derain.data.sampling import EpochShuffle, PatchSchedule, ProgressiveBatchSampler
from derain.data.synthetic import expand_presets

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
    """Synthetic rain on clean photos: the bundled photos of one split (see
    `derain.data.photos`), photo folders, or both.

    Attributes:
        split: bundled photos: "train", "extra", "val", "test" (or several joined by "+"), or
            None for none (then `folders` gives every photo).
        folders: folders of clean photos (recursive; PNG, JPEG, TIFF, WebP, any size), e.g.
            DIV2K or one's own; relative paths are under the DataModule's `root`.
        presets: rain presets or families (`derain.data.synthetic.RAIN_FAMILIES`); a training
            set picks one per item, an evaluation set holds every photo once per preset and
            draw.
        holdout: a rain family left out of `presets` (to measure transfer to it); None or
            "none" for none.
        draws: evaluation only: rain draws per photo and preset.
        max_side: evaluation only: longest image side in pixels.
        tile_stride: training only: spacing of the tiles patches are cut around.
        rain: `RainConfig` settings that replace the presets' (see `derain.data.synthetic`),
            e.g. {rain_free: 0.2, jpeg_share: 0.5} or {jpeg_share: 1, jpeg_quality: [80, 80]}.
    """

    split: Split | None = "train"
    folders: tuple[str, ...] | None = None
    presets: tuple[str, ...] = ("light",)
    holdout: str | None = None
    draws: int = 1
    max_side: int = 512
    tile_stride: int = 64
    rain: dict[str, Any] | None = None


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
        check_images: at `setup`, true/"header" reads every image header, "full" decodes
            every image (in parallel across cores), false checks nothing. Every unreadable
            file is listed at once; those of training and validation sets are left out (up
            to the `max_bad_fraction` limit), those of test sets stop the run.
        max_bad_fraction: share of a training or validation set's pairs that may be unreadable
            (left out at set-up, or skipped with a warning when they fail while training,
            another pair taking their place); more stops the run. Test sets never skip.
        fail_fast: stop at the first unreadable file instead (same as max_bad_fraction=0).

    A training run resumed from a mid-epoch checkpoint continues the epoch where it stopped:
    the shuffle is a function of (seed, epoch), and `state_dict` records the batches drawn.
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
        check_images: bool | str = True,
        max_bad_fraction: float = 0.01,
        fail_fast: bool = False,
    ) -> None:
        super().__init__()
        self.train_spec = _as_spec(train, "data.train") if train is not None else None
        # a set given as None is left out (`data.val.synthetic_light=null` drops a default set)
        self.val_specs = {
            name: _as_spec(s, f"data.val.{name}")
            for name, s in (val or {}).items()
            if s is not None
        }
        self.test_specs = {
            name: _as_spec(s, f"data.test.{name}")
            for name, s in (test or {}).items()
            if s is not None
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
        self.check_images = check_mode(check_images)
        max_bad_samples(0, max_bad_fraction, fail_fast)  # a bad fraction fails here
        self.max_bad_fraction = max_bad_fraction
        self.fail_fast = fail_fast
        self.excluded: dict[str, list[str]] = {}
        """Unreadable files left out at set-up, by set ("data.train", "data.val.NAME")."""
        self.bad_sample_limits: dict[str, int | None] = {}
        """Unreadable pairs each training/validation set may skip (None: none, fail fast)."""
        self._resume_position: dict[str, int] | None = None
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
            self.train_set = self._build(self.train_spec, "data.train", training=True, skip=True)
        if stage in ("fit", "validate", None) and not self.val_sets:
            self.val_sets = [
                self._build(spec, f"data.val.{name}", training=False, skip=True)
                for name, spec in self.val_specs.items()
            ]
        # a test set that cannot be read fails before training, not after it
        fit_check = stage == "fit" and self.check_images is not None
        if (stage in ("test", None) or fit_check) and not self.test_sets:
            self.test_sets = [
                self._build(spec, f"data.test.{name}", training=False, skip=False)
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
        sampler = EpochShuffle(self.train_set, seed=self.seed)
        # a set smaller than one batch would otherwise yield no batch at all
        drop_last = len(self.train_set) >= max(self.schedule.batch_sizes)
        position = self._resume_position
        self._resume_position = None
        self.batch_sampler = ProgressiveBatchSampler(
            sampler,
            self.schedule,
            drop_last=drop_last,
            start_iteration=self._resume_iteration(),
            resume_at=(position["epoch"], position["batches"]) if position else None,
        )
        return DataLoader(
            self.train_set,
            batch_sampler=self.batch_sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def state_dict(self) -> dict[str, int]:
        """Where the training loader stands: its epoch and the batches the trainer has drawn
        from it in that epoch (saved in checkpoints; a resumed run skips those batches)."""
        trainer = self.trainer
        if trainer is None or self.batch_sampler is None:
            return {}
        drawn = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        return {"epoch": int(trainer.current_epoch), "batches": int(drawn)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_position = dict(state_dict) if state_dict else None

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

    def _build(
        self, spec: PairedSet | SyntheticSet, key: str, training: bool, skip: bool
    ) -> Dataset:
        if isinstance(spec, SyntheticSet):
            return self._build_synthetic(spec, training)
        path = self._resolve(spec, key)
        pairs = find_pairs(path, spec.layout, spec.rainy_side, check_images=False)
        pairs = evenly_spaced(pairs, self.limit)
        max_bad = max_bad_samples(len(pairs), self.max_bad_fraction, self.fail_fast)
        if skip:
            self.bad_sample_limits[key] = max_bad
        if self.check_images:
            files = [file for pair in pairs for file in pair.files]
            sizes, bad = scan_files(files, self.check_images, description=f"checking {key}")
            if bad:
                kept = self._leave_out(pairs, bad, key, max_bad if skip else None)
                # pairs left out here count against the limit of those skipped later
                max_bad = None if max_bad is None else max_bad - (len(pairs) - len(kept))
                pairs = kept
            check_pair_sizes(pairs, sizes)
        return PairedDataset(
            pairs,
            train=training,
            patch_size=self.schedule.patch_sizes[0],
            augment=self.augment,
            seed=self.seed,
            max_bad=max_bad if skip else None,
        )

    def _leave_out(
        self, pairs: list[Pair], bad: dict[Path, str], key: str, max_bad: int | None
    ) -> list[Pair]:
        """The pairs whose files all read, when the unreadable ones are within the limit."""
        good = [pair for pair in pairs if not any(file in bad for file in pair.files)]
        dropped = len(pairs) - len(good)
        listed = describe_bad_files(bad)
        if max_bad is None:
            why = (
                "a test set is scored whole, as papers report it"
                if key.startswith("data.test")
                else "data.fail_fast=true"
            )
            raise ImageReadError(
                f"{len(bad)} file(s) of {key} cannot be read ({why}):\n{listed}\n"
                "Fix or remove these files (and their pairs)"
            )
        if dropped > max_bad:
            raise TooManyBadSamplesError(
                f"{dropped} of {len(pairs)} pairs of {key} have unreadable files, more than the "
                f"{max_bad} allowed (data.max_bad_fraction={self.max_bad_fraction}):\n{listed}\n"
                "Fix or remove these files, or raise data.max_bad_fraction"
            )
        warnings.warn(
            f"leaving out {dropped} of {len(pairs)} pairs of {key} whose files cannot be "
            f"read:\n{listed}",
            BadSampleWarning,
            stacklevel=2,
        )
        self.excluded[key] = [str(file) for file in bad]
        return good

    def _build_synthetic(self, spec: SyntheticSet, training: bool) -> Dataset:
        rain = _plain(spec.rain)
        folders = [self._photo_folder(folder) for folder in spec.folders or ()]
        photos = photo_list(spec.split, folders)
        if training:
            return SyntheticTrainDataset(
                presets=spec.presets,
                patch_size=self.schedule.patch_sizes[0],
                tile_stride=spec.tile_stride,
                augment=self.augment,
                seed=self.seed,
                photos=photos,
                limit=self.limit,
                rain=rain,
                holdout=spec.holdout,
            )
        evaluation = ConcatDataset(
            [
                SyntheticEvalDataset(
                    spec.split or "test",
                    preset,
                    spec.draws,
                    spec.max_side,
                    self.seed,
                    rain=rain,
                    photos=photos,
                )
                for preset in expand_presets(spec.presets, spec.holdout)
            ]
        )
        return Subset(evaluation, evenly_spaced(list(range(len(evaluation))), self.limit))

    def _photo_folder(self, folder: str) -> Path:
        """A photo folder: absolute, or under `root` when one is set."""
        path = Path(folder).expanduser()
        return path if path.is_absolute() or self.root is None else self.root / path

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


def _plain(rain: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Rain settings as plain Python values (Hydra hands over DictConfig/ListConfig)."""
    if rain is None:
        return None
    if isinstance(rain, DictConfig):
        return OmegaConf.to_container(rain, resolve=True)
    return dict(rain)

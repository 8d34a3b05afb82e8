"""Training batches whose patch and batch size follow a schedule (Restormer's progressive
learning: small patches in large batches first, larger patches in smaller batches later).

The batch sampler hands the dataset `TrainKey`s, so every item knows its patch size and the
epoch (for a fresh rain draw / crop each epoch) while staying a pure function of the key.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.utils.data import BatchSampler, RandomSampler, Sampler


class TrainKey(NamedTuple):
    """What a training dataset needs to build one item."""

    index: int
    epoch: int
    patch_size: int


@dataclass(frozen=True)
class PatchSchedule:
    """Patch and batch size by training iteration.

    Stage i (patch_sizes[i], batch_sizes[i]) starts at iteration milestones[i - 1]; stage 0 at 0.
    Restormer's recipe, for instance, is patch_sizes (128, 160, 192, 256, 320, 384), batch_sizes
    (64, 40, 32, 16, 8, 8), milestones (92000, 156000, 204000, 240000, 276000).
    """

    patch_sizes: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    milestones: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        stages = len(self.patch_sizes)
        if stages == 0 or len(self.batch_sizes) != stages or len(self.milestones) != stages - 1:
            raise ValueError(
                "a patch schedule needs as many patch_sizes as batch_sizes and one milestone fewer"
                f", got patch_sizes={list(self.patch_sizes)}, batch_sizes={list(self.batch_sizes)}"
                f", milestones={list(self.milestones)}"
            )
        if (
            list(self.milestones) != sorted(set(self.milestones))
            or min(self.milestones, default=1) <= 0
        ):
            raise ValueError(
                f"milestones must increase and be positive, got {list(self.milestones)}"
            )
        if min(self.patch_sizes) < 1 or min(self.batch_sizes) < 1:
            raise ValueError("patch and batch sizes must be positive")

    @classmethod
    def constant(cls, patch_size: int, batch_size: int) -> PatchSchedule:
        """One stage: the same patch and batch size throughout."""
        return cls(patch_sizes=(patch_size,), batch_sizes=(batch_size,))

    def stage_at(self, iteration: int) -> tuple[int, int]:
        """(patch_size, batch_size) in force at `iteration` (0-based)."""
        stage = bisect.bisect_right(self.milestones, iteration)
        return self.patch_sizes[stage], self.batch_sizes[stage]


class ProgressiveBatchSampler(BatchSampler):
    """Groups the indices of `sampler` into batches of `TrainKey`s sized by a `PatchSchedule`.

    Iterations count the batches drawn (= optimizer steps without gradient accumulation); call
    `set_iteration` when resuming. Each pass over the sampler is one epoch.

    Args:
        sampler: yields dataset indices (e.g. a RandomSampler, or Lightning's DistributedSampler
            that replaces it).
        schedule: patch and batch size by iteration.
        drop_last: drop the last, smaller batch of each epoch (keeps batch norm statistics sane).
        start_iteration: the iteration to start at (`set_iteration`).
        resume_at: (epoch, batches): see `resume_epoch`.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        schedule: PatchSchedule,
        drop_last: bool = True,
        start_iteration: int = 0,
        resume_at: tuple[int, int] | None = None,
    ) -> None:
        # BatchSampler.__init__ is not called: its fixed batch_size is a property here.
        # Where to start is an argument, not only a setter: under several processes Lightning
        # rebuilds this sampler from its arguments around a DistributedSampler
        self.sampler = sampler
        self.schedule = schedule
        self.drop_last = drop_last
        self.iteration = start_iteration
        self.epoch = 0
        self._skip = tuple(resume_at) if resume_at is not None else None

    @property
    def batch_size(self) -> int:
        """The batch size in force at the current iteration."""
        return self.schedule.stage_at(self.iteration)[1]

    @property
    def patch_size(self) -> int:
        """The patch size in force at the current iteration."""
        return self.schedule.stage_at(self.iteration)[0]

    def set_iteration(self, iteration: int) -> None:
        """Continue the schedule from `iteration` (e.g. the trainer's step after a resume)."""
        self.iteration = iteration

    def resume_epoch(self, epoch: int, batches: int) -> None:
        """Make the next pass, if it is over `epoch`, leave out the `batches` first batches
        (those drawn before a checkpoint that is resumed; `set_iteration` comes first)."""
        self._skip = (epoch, batches)

    def __iter__(self) -> Iterator[list[TrainKey]]:
        # samplers that shuffle by epoch (EpochShuffle, DistributedSampler) know the epoch,
        # which Lightning sets before each one, a resumed run included
        epoch = getattr(self.sampler, "epoch", self.epoch)
        self.epoch = epoch + 1
        skip = self._skip[1] if self._skip is not None and self._skip[0] == epoch else 0
        self._skip = None
        # the skipped batches had the sizes in force at their own iterations
        iteration = self.iteration - skip
        batch: list[TrainKey] = []
        for index in self.sampler:
            patch_size, batch_size = self.schedule.stage_at(iteration)
            batch.append(TrainKey(int(index), epoch, patch_size))
            if len(batch) == batch_size:
                iteration += 1
                if skip:
                    skip -= 1
                else:
                    self.iteration = iteration
                    yield batch
                batch = []
        if batch and not self.drop_last and not skip:
            self.iteration = iteration + 1
            yield batch

    def __len__(self) -> int:
        """Batches in one epoch at the current batch size (the count can change mid-epoch)."""
        count, size = len(self.sampler), self.batch_size  # type: ignore[arg-type]
        return count // size if self.drop_last else -(-count // size)


class EpochShuffle(RandomSampler):
    """A random order of the whole data set that depends on (seed, epoch) alone, so a resumed
    run draws the same order. Each pass moves to the next epoch unless `set_epoch` (which
    Lightning calls before every epoch) says otherwise.

    A `RandomSampler`, so that Lightning, under several processes, swaps it for a shuffling
    `DistributedSampler`.
    """

    def __init__(self, data_source, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()

    def __len__(self) -> int:
        return len(self.data_source)

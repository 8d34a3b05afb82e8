"""Progressive patch schedule: patch and batch size change at iteration milestones."""

from __future__ import annotations

import pytest
from torch.utils.data import SequentialSampler

from derain.data import PatchSchedule, ProgressiveBatchSampler, TrainKey
from derain.data.sampling import EpochShuffle

SCHEDULE = PatchSchedule(patch_sizes=(32, 48, 64), batch_sizes=(4, 2, 1), milestones=(2, 5))


def test_stage_changes_at_each_milestone():
    stages = [SCHEDULE.stage_at(i) for i in range(7)]
    assert stages == [(32, 4), (32, 4), (48, 2), (48, 2), (48, 2), (64, 1), (64, 1)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patch_sizes": (32, 48), "batch_sizes": (4,), "milestones": (2,)},
        {"patch_sizes": (32, 48), "batch_sizes": (4, 2), "milestones": ()},
        {"patch_sizes": (32, 48, 64), "batch_sizes": (4, 2, 1), "milestones": (5, 2)},
    ],
)
def test_inconsistent_schedules_are_rejected(kwargs):
    with pytest.raises(ValueError):
        PatchSchedule(**kwargs)


def test_batches_follow_the_schedule_across_epochs():
    sampler = ProgressiveBatchSampler(SequentialSampler(range(10)), SCHEDULE, drop_last=True)
    first_epoch = list(sampler)
    # 2 batches of 4 (8 indices), then 2 is left: one batch of 2 at patch 48
    assert [len(b) for b in first_epoch] == [4, 4, 2]
    assert [b[0].patch_size for b in first_epoch] == [32, 32, 48]
    assert first_epoch[0][:2] == [TrainKey(0, 0, 32), TrainKey(1, 0, 32)]
    second_epoch = list(sampler)
    assert {key.epoch for b in second_epoch for key in b} == {1}
    assert [len(b) for b in second_epoch][:3] == [2, 2, 1]
    assert sampler.iteration == 3 + len(second_epoch)


def test_set_iteration_resumes_the_schedule():
    sampler = ProgressiveBatchSampler(SequentialSampler(range(10)), SCHEDULE)
    sampler.set_iteration(5)
    assert (sampler.patch_size, sampler.batch_size, len(sampler)) == (64, 1, 10)
    assert all(len(batch) == 1 and batch[0].patch_size == 64 for batch in sampler)


def test_last_partial_batch_kept_without_drop_last():
    schedule = PatchSchedule.constant(patch_size=16, batch_size=4)
    sampler = ProgressiveBatchSampler(SequentialSampler(range(6)), schedule, drop_last=False)
    assert [len(b) for b in sampler] == [4, 2] and len(sampler) == 2


def test_the_shuffle_depends_on_seed_and_epoch_only():
    first, again = EpochShuffle(range(50), seed=3), EpochShuffle(range(50), seed=3)
    epoch0, epoch1 = list(first), list(first)  # each pass moves to the next epoch
    assert sorted(epoch0) == list(range(50)) and epoch0 != epoch1
    again.set_epoch(1)
    assert list(again) == epoch1
    assert list(EpochShuffle(range(50), seed=4)) != epoch0


def test_a_resumed_sampler_skips_the_batches_drawn_before_the_checkpoint():
    # 20 items over the schedule's stages: batches of 4, 4, then 2, 2, 2, then 1...
    whole = list(ProgressiveBatchSampler(EpochShuffle(range(20), seed=1), SCHEDULE))
    # as rebuilt from its arguments (what Lightning does under several processes), after 3 steps
    resumed = ProgressiveBatchSampler(
        EpochShuffle(range(20), seed=1), SCHEDULE, start_iteration=3, resume_at=(0, 3)
    )
    assert list(resumed) == whole[3:]
    assert resumed.iteration == len(whole)
    assert all(key.epoch == 1 for batch in resumed for key in batch)  # next epoch: no skip

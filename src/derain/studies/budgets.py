"""Training budgets as Hydra overrides of conf/train.yaml: the smallest run that exercises every
part of training (the tests' and the smoke studies'), and the scales of the ablation study."""

from __future__ import annotations

from dataclasses import dataclass

SMOKE_OVERRIDES = (
    "model=elf_tiny",
    "model.width=8",
    "data.limit=2",
    "data.patch_size=32",
    "data.batch_size=2",
    "data.num_workers=0",
    "+data.val.synthetic_light.max_side=48",
    "+data.val.synthetic_heavy.max_side=48",
    "+data.test.synthetic_light.max_side=48",
    "+data.test.synthetic_heavy.max_side=48",
    "callbacks.progress_bar=null",
    "trainer.max_steps=3",
)
"""The real configs with the smallest sizes that still exercise every part of training."""


@dataclass(frozen=True)
class Scale:
    """A training budget every variant of a study shares.

    overrides: Hydra overrides of conf/train.yaml (the same for every variant).
    profile_size: side of the square input that GMACs and CPU latency are measured on.
    latency_runs: timed forward passes per variant (the median is reported).
    """

    name: str
    overrides: tuple[str, ...]
    profile_size: int
    latency_runs: int
    description: str


SCALES: dict[str, Scale] = {
    "smoke": Scale(
        "smoke",
        (
            *(o for o in SMOKE_OVERRIDES if not o.startswith(("model.width", "trainer.max_steps"))),
            # a little wider and longer than the tests' runs, so the variants differ at all
            "model.width=16",
            "trainer.max_steps=4",
            "++trainer.enable_progress_bar=false",
            "++trainer.enable_model_summary=false",
        ),
        profile_size=64,
        latency_runs=2,
        description="a few steps of a narrow elf_tiny on 48-px crops: checks the plumbing in "
        "seconds per variant; its numbers mean nothing",
    ),
    "full": Scale(
        "full",
        (
            "experiment=demo",
            # one process (the demo runs two DDP processes, which a notebook cannot start), with
            # the demo's batch of 8 in all
            "trainer=cpu",
            "data.batch_size=8",
            "trainer.max_steps=400",
            # a time guard would give variants that run slower (or share a busy machine) fewer
            # steps; the budget is the step count alone
            "trainer.max_time=null",
            # the paper's loss weights (the demo weighs SSIM 3×): the study compares networks
            "loss.ssim_weight=0.15",
            # the paper's 8 flips/rotations and a single test pass (the demo trains on the 4
            # orientation-keeping flips and tests their ensemble), as experiment=ablation
            "data.augment=d4",
            "module.self_ensemble=null",
            "callbacks.progress_bar=null",
            "++trainer.enable_progress_bar=false",
            "++trainer.enable_model_summary=false",
        ),
        profile_size=256,
        latency_runs=5,
        description="the CPU demo recipe (elf_tiny, 64-px patches, batch 8, cosine schedule) "
        "with the paper's loss weights, cut to 400 steps per variant, tested on the full "
        "synthetic test sets: 3-8 minutes a variant on 2 CPU cores",
    ),
}


def get_scale(scale: str | Scale) -> Scale:
    if isinstance(scale, Scale):
        return scale
    try:
        return SCALES[scale]
    except KeyError:
        raise ValueError(
            f"unknown scale {scale!r}: choose one of {', '.join(SCALES)} (DERAIN_SCALE / the "
            "notebook's `scale` parameter)"
        ) from None


STUDY_SMOKE_OVERRIDES = (
    "experiment=ablation",
    *(o for o in SMOKE_OVERRIDES if not o.startswith("trainer.max_steps")),
    "study.budget=3",
    "trainer.check_val_every_n_epoch=1",  # a validation per step: a curve of three points
)
"""conf/experiment/ablation.yaml at the smallest size: each point of a sweep in seconds (the
tests' and the notebook's smoke studies)."""

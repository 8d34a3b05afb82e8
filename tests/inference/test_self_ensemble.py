"""Self-ensembles: flips and rotations undone exactly, predictions averaged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from elf_checkpoints import tiny_elf

from derain.inference import Restorer, self_ensemble
from derain.models import ELF
from derain.models.ensemble import (
    DIHEDRAL,
    FLIPS,
    dihedral,
    ensemble_transforms,
    inverse_dihedral,
)


@pytest.fixture(scope="module")
def tiny_model() -> ELF:
    return tiny_elf()


def test_the_eight_transforms_are_distinct_and_each_is_undone_by_its_inverse():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    transformed = [dihedral(x, turns, flip) for turns, flip in DIHEDRAL]
    assert len(DIHEDRAL) == 8
    assert len({tuple(t.flatten().tolist()) for t in transformed}) == 8
    for (turns, flip), t in zip(DIHEDRAL, transformed, strict=True):
        assert torch.equal(inverse_dihedral(t, turns, flip), x)


def test_an_equivariant_function_is_left_unchanged():
    x = torch.rand(1, 3, 9, 14)
    torch.testing.assert_close(self_ensemble(lambda t: 2 * t, x), 2 * x)


@pytest.mark.parametrize(
    ("argument", "transforms"), [(True, DIHEDRAL), ("d4", DIHEDRAL), ("flips", FLIPS)]
)
def test_the_restorer_returns_the_mean_of_the_back_transformed_outputs(
    tiny_model, argument, transforms
):
    image = np.random.default_rng(0).random((40, 52, 3), dtype=np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.inference_mode():
        outputs = [
            inverse_dihedral(tiny_model(dihedral(x, turns, flip)).image, turns, flip)
            for turns, flip in transforms
        ]
    expected = torch.stack(outputs).mean(0).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    result = Restorer(tiny_model, device="cpu", self_ensemble=argument)(image)
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_the_restorer_refuses_an_unknown_ensemble(tiny_model):
    with pytest.raises(ValueError, match="self_ensemble=eight is not one of off, flips, d4"):
        Restorer(tiny_model, device="cpu", self_ensemble="eight")


def test_the_flips_keep_near_vertical_streaks_near_vertical():
    # a streak leaning 10° right of vertical on a 41×41 canvas
    rows = torch.arange(41.0)
    streak = torch.zeros(1, 1, 41, 41)
    streak[0, 0, rows.long(), (20 + (rows - 20) * math.tan(math.radians(10))).round().long()] = 1

    def lean(image: torch.Tensor) -> float:
        """Degrees from vertical of the line through the lit pixels (least squares)."""
        r, c = torch.nonzero(image[0, 0], as_tuple=True)
        slope = torch.linalg.lstsq(
            torch.stack((r.float(), torch.ones_like(r, dtype=torch.float32)), 1),
            c.float()[:, None],
        ).solution[0, 0]
        return math.degrees(math.atan(float(slope))) if r.unique().numel() > 1 else 90.0

    assert len(FLIPS) == 4 and set(FLIPS) < set(DIHEDRAL)
    for turns, flip in FLIPS:
        assert abs(lean(dihedral(streak, turns, flip))) < 11
    # the other four turn it towards the horizontal
    for turns, flip in set(DIHEDRAL) - set(FLIPS):
        assert abs(lean(dihedral(streak, turns, flip))) > 79


def test_self_ensemble_averages_over_the_given_transforms_only():
    x = torch.rand(1, 3, 6, 8)
    seen = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return t[:, :, :1].expand_as(t) + 0  # first row broadcast: not flip-equivariant

    result = self_ensemble(fn, x, FLIPS)
    assert len(seen) == 4
    expected = torch.stack([inverse_dihedral(fn(dihedral(x, q, f)), q, f) for q, f in FLIPS]).mean(
        0
    )
    torch.testing.assert_close(result, expected)


def test_unknown_ensemble_names_list_the_valid_ones():
    assert ensemble_transforms("flips") == FLIPS and ensemble_transforms("d4") == DIHEDRAL
    with pytest.raises(ValueError, match="d4, flips"):
        ensemble_transforms("d8")

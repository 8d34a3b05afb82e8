"""The 8-way self-ensemble: flips and rotations undone exactly, predictions averaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from elf_checkpoints import tiny_elf

from derain.inference import Restorer, self_ensemble
from derain.inference.ensemble import DIHEDRAL, dihedral, inverse_dihedral
from derain.models import ELF


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


def test_the_restorer_returns_the_mean_of_the_eight_back_transformed_outputs(tiny_model):
    image = np.random.default_rng(0).random((40, 52, 3), dtype=np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.inference_mode():
        outputs = [
            inverse_dihedral(tiny_model(dihedral(x, turns, flip)).image, turns, flip)
            for turns, flip in DIHEDRAL
        ]
    expected = torch.stack(outputs).mean(0).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    result = Restorer(tiny_model, device="cpu", self_ensemble=True)(image)
    np.testing.assert_allclose(result, expected, atol=1e-5)

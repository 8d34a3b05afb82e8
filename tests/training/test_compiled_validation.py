"""Validation of a compiled network (model.compile=true) pads images to a few size buckets, so
its static-shape blocks compile a few times, and scores exactly what the network padding to
that multiple scores. Checked without compiling: the bucketing follows the config switch."""

from __future__ import annotations

import pytest
import torch

from derain.training.module import DerainModule
from helpers import TINY_MODEL

SIZES = [(37, 50), (50, 37), (61, 45), (64, 64), (100, 90), (41, 120)]


def _validate(module: DerainModule, images: list[torch.Tensor]) -> dict[str, float]:
    module.eval()
    with torch.no_grad():
        for image in images:
            clean = image.flip(-1)
            module.validation_step({"rainy": image, "clean": clean}, 0)
    return {k: float(v) for k, v in module.val_metrics[0].compute().items()}


def test_compiled_validation_sees_few_sizes_and_scores_as_the_network_padding_to_them():
    torch.manual_seed(0)
    images = [torch.rand(1, 3, h, w) for h, w in SIZES]
    bucketed = DerainModule(model={**TINY_MODEL, "compile": False}, compiled_val_multiple=64)
    assert bucketed.val_multiple is None  # not compiled: the network's own padding only
    bucketed.hparams.model["compile"] = True  # what model.compile=true says (built uncompiled)
    assert bucketed.val_multiple == 64
    # the same weights, with the network's own padding rule at a multiple of 64
    reference = DerainModule(model={**TINY_MODEL, "multiple": 64})
    reference.model.load_state_dict(bucketed.model.state_dict())

    seen = set()
    bucketed.model.register_forward_pre_hook(lambda _, args: seen.add(tuple(args[0].shape)))
    scores = _validate(bucketed, images)

    assert seen == {(1, 3, 64, 64), (1, 3, 64, 128), (1, 3, 128, 128)}  # 6 sizes, 3 shapes
    assert scores == _validate(reference, images)  # identical, not merely close
    # and the images come back at their own size, for the panel too
    assert [row[1].shape[-2:] for row in bucketed._panel_rows] == [torch.Size(s) for s in SIZES[:4]]


def test_the_final_test_of_a_compiled_network_runs_unpadded():
    torch.manual_seed(0)
    module = DerainModule(model={**TINY_MODEL, "compile": False}, compiled_val_multiple=64)
    module.hparams.model["compile"] = True
    seen = set()
    module.model.register_forward_pre_hook(lambda _, args: seen.add(tuple(args[0].shape)))
    module.eval()
    with torch.no_grad():
        module._test_batch(
            {"rainy": torch.rand(1, 3, 37, 50), "clean": torch.rand(1, 3, 37, 50)}, 0, 0
        )
    assert seen == {(1, 3, 37, 50)}


def test_a_bucket_must_be_a_positive_size():
    with pytest.raises(ValueError, match="module.compiled_val_multiple"):
        DerainModule(model=TINY_MODEL, compiled_val_multiple=0)

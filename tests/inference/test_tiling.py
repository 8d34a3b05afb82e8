"""Tiled inference: tiles cover the image in multiples of 16, blend without seams, and engage on
their own when an image would not fit the memory budget."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from elf_checkpoints import tiny_elf
from skimage import data

from derain.data.synthetic import SyntheticRain
from derain.inference import Restorer, parse_memory_size, tiled_apply
from derain.inference.restorer import IMAGE_BUFFER_BYTES_PER_PIXEL
from derain.inference.tiling import axis_tiles, blend_windows
from derain.models import ELF

TIGHT_BUDGET = "30MB"  # a 512² image through elf_tiny needs ~125 MB in one pass


@pytest.fixture(scope="module")
def tiny_model() -> ELF:
    return tiny_elf()


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [
        (100, 96, 32),
        (513, 96, 32),
        (513, 256, 32),
        (2160, 1392, 32),
        (3840, 1392, 32),
        (513, 128, 0),
    ],
)
def test_tiles_cover_the_axis_in_equal_multiples_of_16_with_enough_overlap(length, tile, overlap):
    tiles = axis_tiles(length, tile, overlap)
    starts = [start for start, _ in tiles]
    sizes = {size for _, size in tiles}
    assert starts[0] == 0 and starts[-1] + tiles[-1][1] == length
    assert len(sizes) == 1 and (size := sizes.pop()) % 16 == 0 and size <= tile
    assert all(size - (b - a) >= overlap for a, b in zip(starts, starts[1:], strict=False))
    # one tile fewer, even at the full tile size, would leave pixels uncovered
    fewer = len(tiles) - 1
    assert fewer * tile - (fewer - 1) * overlap < length


def test_an_axis_shorter_than_the_tile_is_one_tile_of_its_own_length():
    assert axis_tiles(40, 64, 16) == [(0, 40)]


def test_neighbouring_blend_windows_sum_to_one_across_their_overlap():
    tiles = axis_tiles(200, 64, 16)
    total = torch.zeros(200)
    for (start, size), window in zip(tiles, blend_windows(tiles), strict=True):
        assert window.min() > 0
        total[start : start + size] += window
    torch.testing.assert_close(total, torch.ones(200))


def test_blending_is_an_exact_partition_of_unity():
    x = torch.rand(2, 3, 97, 131)
    torch.testing.assert_close(tiled_apply(lambda t: t, x, tile=48, overlap=16), x)
    constant = tiled_apply(lambda t: torch.full_like(t, 0.3), x, tile=48, overlap=16)
    torch.testing.assert_close(constant, torch.full_like(x, 0.3))


@pytest.mark.parametrize(
    ("size", "expected"),
    [("2GB", 2 * 10**9), ("512MiB", 512 * 2**20), ("1.5 GiB", int(1.5 * 2**30)), (4096, 4096)],
)
def test_memory_sizes_read_with_units(size, expected):
    assert parse_memory_size(size) == expected


@pytest.mark.parametrize("size", ["two GB", "5 parsecs", "-1GB", 0])
def test_a_malformed_memory_size_names_the_setting(size):
    with pytest.raises(ValueError, match="max_memory="):
        parse_memory_size(size)


def test_a_small_image_goes_through_in_one_pass(tiny_model):
    plan = Restorer(tiny_model, device="cpu", max_memory=TIGHT_BUDGET).plan(64, 80)
    assert plan.tile is None and plan.tiles == 1 and plan.tile_shape == (64, 80)


def test_the_automatic_tile_is_the_largest_multiple_of_16_that_fits(tiny_model):
    restorer = Restorer(tiny_model, device="cpu", max_memory=TIGHT_BUDGET)
    plan = restorer.plan(512, 512)
    assert plan.tiles > 1 and plan.tile % 16 == 0
    assert all(side % 16 == 0 for side in plan.tile_shape)
    buffers = 512 * 512 * IMAGE_BUFFER_BYTES_PER_PIXEL
    per_pixel = restorer.activation_bytes_per_pixel
    budget = parse_memory_size(TIGHT_BUDGET)
    assert plan.estimated_bytes <= budget
    assert (
        buffers + plan.tile**2 * per_pixel <= budget < buffers + (plan.tile + 16) ** 2 * per_pixel
    )


def test_a_budget_too_small_for_any_tile_says_how_much_is_needed(tiny_model):
    restorer = Restorer(tiny_model, device="cpu", max_memory="11MB")
    with pytest.raises(
        ValueError, match=r"max_memory=.* too small .* raise max_memory to at least"
    ):
        restorer.plan(512, 512)


@pytest.mark.parametrize(("tile", "overlap"), [(100, 32), (64, 32)])
def test_a_forced_tile_must_be_a_multiple_of_16_above_twice_the_overlap(tiny_model, tile, overlap):
    with pytest.raises(ValueError, match=f"tile={tile} must be a multiple of 16"):
        Restorer(tiny_model, device="cpu", tile=tile, overlap=overlap)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / float(np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def tiled_and_whole(tiny_model):
    """A real photo with synthetic rain, derained whole and in tiles by a trained-looking
    network: seeded random weights with the output convolutions scaled by 0.1, so that, like a
    trained deraining network, it changes the input by about as much as the rain does
    (unscaled, a random network's output is ~5× further from its input and every difference,
    tiled or not, grows with it)."""
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.rain_net.to_rain.weight.mul_(0.1)
        model.recovery_net.reconstruct[-1].weight.mul_(0.1)
    clean = data.astronaut().astype(np.float32) / 255
    rainy = SyntheticRain("light", seed=0)(clean, key=0).rainy
    whole = Restorer(model, device="cpu")
    tiled = Restorer(model, device="cpu", max_memory=TIGHT_BUDGET)
    return clean, rainy, whole(rainy), whole.last_plan, tiled(rainy), tiled.last_plan


def test_tiling_engages_on_its_own_when_the_image_exceeds_max_memory(tiled_and_whole):
    *_, whole_plan, _, tiled_plan = tiled_and_whole
    assert whole_plan.tiles == 1
    assert tiled_plan.tiles >= 4 and tiled_plan.estimated_bytes <= tiled_plan.budget_bytes


def test_tiled_and_whole_image_results_score_within_0_05_db(tiled_and_whole):
    clean, rainy, whole, _, tiled, _ = tiled_and_whole
    assert abs(_psnr(tiled, clean) - _psnr(whole, clean)) < 0.05
    assert _psnr(tiled, whole) > 40


def test_tile_seams_leave_no_step_in_the_difference_to_the_whole_image(tiled_and_whole):
    """Where tiles meet, tiled − whole changes no faster from pixel to pixel than inside tiles
    (cutting the tiles hard instead, without overlap, makes it jump 2.2× higher at the cuts)."""
    *_, whole, _, tiled, plan = tiled_and_whole
    steps = np.abs(np.diff(tiled - whole, axis=1)).max(axis=2)  # between columns x and x + 1
    seam_columns = np.zeros(steps.shape[1], dtype=bool)
    for start, _ in axis_tiles(512, plan.tile, 32)[1:]:
        seam_columns[start - 1 : start + 32] = True  # the overlap band and its edges
    assert steps[:, seam_columns].max() < 1.25 * steps[:, ~seam_columns].max()

"""`derain.load` / `Restorer`: any input kind in, the same kind out, on the chosen device and precision."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from elf_checkpoints import tiny_elf, write_lightning_checkpoint
from PIL import Image

import derain
from derain.inference import Restorer
from derain.models import ELF

HEIGHT, WIDTH = 40, 52  # neither a multiple of 16


@pytest.fixture(scope="module")
def tiny_model() -> ELF:
    return tiny_elf()


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory, tiny_model) -> Path:
    return write_lightning_checkpoint(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """H×W×3 float32 in [0, 1]."""
    return np.random.default_rng(0).random((HEIGHT, WIDTH, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def expected(tiny_model, image) -> torch.Tensor:
    """The network's own output for `image`, clipped: 1×3×H×W."""
    with torch.inference_mode():
        return tiny_model(torch.from_numpy(image).permute(2, 0, 1)[None]).image.clamp(0, 1)


@pytest.fixture(scope="module")
def restorer(checkpoint_path) -> Restorer:
    return derain.load(checkpoint_path, device="cpu")


def test_derain_load_builds_a_restorer_on_the_available_device(checkpoint_path):
    restorer = derain.load(checkpoint_path)
    expected_type = "cuda" if torch.cuda.is_available() else "cpu"
    assert isinstance(restorer, Restorer) and restorer.device.type == expected_type


def test_importing_derain_does_not_import_torch():
    code = "import sys, derain; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_float_array_gives_a_float_array(restorer, image, expected):
    result = restorer(image)
    assert result.dtype == np.float32 and result.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_allclose(result, expected[0].permute(1, 2, 0).numpy(), atol=1e-6)


def test_a_uint8_array_gives_a_uint8_array(restorer, image, expected):
    pixels = np.round(image * 255).astype(np.uint8)
    result = restorer(pixels)
    assert result.dtype == np.uint8 and result.shape == (HEIGHT, WIDTH, 3)
    float_result = restorer(pixels.astype(np.float32) / 255)
    np.testing.assert_array_equal(result, np.round(float_result * 255).astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_a_pil_image_gives_a_pil_image_of_its_size_and_mode(restorer, image, mode):
    picture = Image.fromarray(np.round(image * 255).astype(np.uint8)).convert(mode)
    result = restorer(picture)
    assert isinstance(result, Image.Image)
    assert result.mode == mode and result.size == (WIDTH, HEIGHT)
    if "A" in mode:  # alpha comes back unchanged
        assert result.getchannel("A").tobytes() == picture.getchannel("A").tobytes()


def test_a_palette_pil_image_comes_back_as_rgb(restorer, image):
    picture = Image.fromarray(np.round(image * 255).astype(np.uint8)).convert("P")
    assert restorer(picture).mode == "RGB"


def test_a_grey_array_comes_back_grey_as_the_luminance_of_the_networks_rgb(restorer, image):
    grey = image[:, :, 1]
    result = restorer(grey)
    assert result.shape == grey.shape and result.dtype == grey.dtype
    rgb = restorer(np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_allclose(result, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-5)


def test_an_rgba_array_keeps_its_alpha_exactly(restorer, image):
    pixels = np.round(image * 255).astype(np.uint8)
    alpha = np.arange(HEIGHT * WIDTH, dtype=np.uint8).reshape(HEIGHT, WIDTH)
    result = restorer(np.dstack([pixels, alpha]))
    assert result.shape == (HEIGHT, WIDTH, 4)
    np.testing.assert_array_equal(result[:, :, 3], alpha)
    np.testing.assert_array_equal(result[:, :, :3], restorer(pixels))


def test_a_negative_stride_view_is_derained_like_a_copy(restorer, image):
    bgr_view = image[..., ::-1]
    np.testing.assert_array_equal(restorer(bgr_view), restorer(bgr_view.copy()))
    flipped = np.round(image * 255).astype(np.uint8)[::-1, ::-1]
    np.testing.assert_array_equal(restorer(flipped), restorer(flipped.copy()))


@pytest.mark.parametrize("kind", ["array", "tensor"])
def test_nan_pixels_are_refused_with_how_many_and_the_fix(restorer, image, kind):
    poisoned = image.copy()
    poisoned.reshape(-1)[::1000] = np.nan
    count = int(np.isnan(poisoned).sum())
    bad = poisoned if kind == "array" else torch.from_numpy(poisoned).permute(2, 0, 1)
    with pytest.raises(ValueError, match=rf"{count} NaN or infinite.*nan_to_num"):
        restorer(bad)


@pytest.mark.parametrize("kind", ["array", "tensor"])
def test_a_float_image_in_0_255_is_refused_with_the_fix(restorer, image, kind):
    scaled = image * 255
    bad = scaled if kind == "array" else torch.from_numpy(scaled).permute(2, 0, 1)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\].*divide .*by 255"):
        restorer(bad)


def test_slight_overshoot_of_a_float_image_is_clipped_not_refused(restorer, image):
    overshoot = image * 1.1 - 0.05  # as resampling with a sharp kernel leaves
    np.testing.assert_array_equal(restorer(overshoot), restorer(np.clip(overshoot, 0, 1)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_gpu_device_without_one_names_the_setting_and_auto(checkpoint_path, device):
    with pytest.raises(ValueError, match=rf"device='{device}' names a GPU.*device=\"auto\""):
        derain.load(checkpoint_path, device=device)


def test_an_unknown_device_names_the_setting(checkpoint_path):
    with pytest.raises(ValueError, match="device='gpu' is not a device.*auto"):
        derain.load(checkpoint_path, device="gpu")


def test_parts_of_the_package_are_reachable_after_import_derain_alone():
    code = "import derain; print(sorted(derain.inference.bundled_models()))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "'default'" in result.stdout


def test_a_chw_tensor_gives_a_chw_tensor(restorer, image, expected):
    x = torch.from_numpy(image).permute(2, 0, 1)
    result = restorer(x)
    assert result.shape == x.shape and result.dtype == x.dtype and result.device == x.device
    torch.testing.assert_close(result, expected[0])


def test_a_bchw_batch_gives_a_bchw_batch_of_the_same_dtype(restorer, image, expected):
    batch = torch.from_numpy(image).permute(2, 0, 1).repeat(2, 1, 1, 1).to(torch.float64)
    result = restorer(batch)
    assert result.shape == (2, 3, HEIGHT, WIDTH) and result.dtype == torch.float64
    torch.testing.assert_close(result[1].float(), expected[0])


def test_a_uint8_tensor_gives_a_uint8_tensor(restorer, image):
    x = torch.from_numpy(np.round(image * 255).astype(np.uint8)).permute(2, 0, 1)
    result = restorer(x)
    assert result.dtype == torch.uint8 and result.shape == x.shape


@pytest.mark.parametrize("head", ["refined_rain", "background", "rain"])
def test_the_rain_layer_is_what_was_removed_whatever_the_head(image, head):
    torch.manual_seed(0)
    restorer = Restorer(ELF.from_preset("elf_tiny", head=head).eval(), device="cpu")
    restored, rain = restorer.separate(image)
    np.testing.assert_allclose(rain, np.clip(image - restored, 0, 1), atol=1e-6)
    assert np.abs(restored - restorer(image)).max() < 1e-6


def test_bf16_on_cpu_stays_close_to_fp32(tiny_model, image, expected):
    result = Restorer(tiny_model, device="cpu", precision="bf16-mixed")(image)
    assert result.dtype == np.float32
    assert np.abs(result - expected[0].permute(1, 2, 0).numpy()).mean() < 0.02


def test_fp16_on_cpu_is_refused_with_the_alternatives(tiny_model):
    with pytest.raises(ValueError, match="precision=16-mixed needs a CUDA device.*bf16-mixed"):
        Restorer(tiny_model, device="cpu", precision="16-mixed")


def test_an_unknown_precision_lists_the_choices(tiny_model):
    with pytest.raises(ValueError, match="32-true, bf16-mixed, 16-mixed"):
        Restorer(tiny_model, device="cpu", precision="int8")


@pytest.mark.parametrize(
    ("old", "new"), [("fp32", "32-true"), ("bf16", "bf16-mixed"), ("fp16", "16-mixed")]
)
def test_an_earlier_precision_name_says_the_one_to_write(tiny_model, old, new):
    with pytest.raises(
        ValueError, match=f"precision={old} is an earlier name: write precision={new}"
    ):
        Restorer(tiny_model, device="cpu", precision=old)


@pytest.mark.parametrize(
    "bad", [np.zeros((40, 52, 5)), np.zeros((1, 40, 52, 3)), torch.zeros(1, 1, 40, 52), "image.png"]
)
def test_an_input_that_is_no_rgb_image_is_refused_with_what_is_expected(restorer, bad):
    with pytest.raises((ValueError, TypeError), match="H×W"):
        restorer(bad)


def test_progress_hears_every_tile_of_every_ensemble_pass(tiny_model, image):
    restorer = Restorer(tiny_model, device="cpu", tile=32, overlap=8, self_ensemble="flips")
    calls = []
    restorer(image, progress=lambda done, total: calls.append((done, total)))
    passes = restorer.last_plan.tiles * 4
    assert restorer.last_plan.tiles > 1
    assert calls == [(done, passes) for done in range(passes + 1)]


def test_progress_leaves_the_result_unchanged(restorer, image):
    assert np.array_equal(restorer(image, progress=lambda done, total: None), restorer(image))


def test_with_options_changes_ensemble_and_budget_and_shares_the_network(restorer, image):
    other = restorer.with_options(self_ensemble="flips", max_memory="1GB")
    assert other.model is restorer.model
    assert other.max_memory == 10**9 and len(other.ensemble) == 4
    assert restorer.ensemble is None and restorer.max_memory != 10**9
    ensembled = Restorer(restorer.model, device="cpu", self_ensemble="flips")
    np.testing.assert_allclose(other(image), ensembled(image), atol=1e-6)


def test_with_options_keeps_what_it_is_not_given(restorer):
    other = restorer.with_options(self_ensemble=True)
    assert len(other.ensemble) == 8 and other.max_memory == restorer.max_memory
    assert restorer.with_options(self_ensemble=False).ensemble is None


def test_with_freed_memory_retained_tiles_are_planned_for_the_retained_heap(
    tiny_model, monkeypatch
):
    import derain.inference.restorer as restorer_module

    monkeypatch.setattr(restorer_module, "keep_freed_memory", lambda: True)  # not process-wide
    plain = Restorer(tiny_model, device="cpu", max_memory="64MB")
    fast = Restorer(tiny_model, device="cpu", max_memory="64MB", retain_freed_memory=True)
    assert fast.retains_freed_memory and not plain.retains_freed_memory
    assert fast.activation_bytes_per_pixel == pytest.approx(
        restorer_module.RETAINED_MEMORY_OVERHEAD * plain.activation_bytes_per_pixel
    )
    fast_plan, plain_plan = fast.plan(1024, 1024), plain.plan(1024, 1024)
    assert fast_plan.tiles > plain_plan.tiles
    assert fast_plan.estimated_bytes <= fast_plan.budget_bytes


_RESIDENT_GROWTH = """
import resource, sys
import numpy as np
import derain

restorer = derain.load(sys.argv[1], device="cpu", max_memory=sys.argv[2])  # retains by default
image = np.random.default_rng(0).random((640, 640, 3), dtype=np.float32)
restorer.activation_bytes_per_pixel  # measured before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
restorer(image)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(restorer.retains_freed_memory, restorer.last_plan.tiles, after - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_derain_load_keeps_freed_memory_and_its_peak_within_max_memory(checkpoint_path):
    budget = 64 * 10**6
    out = subprocess.run(
        [sys.executable, "-c", _RESIDENT_GROWTH, str(checkpoint_path), str(budget)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    retained, tiles, growth = out[0], int(out[1]), int(out[2])
    assert retained == "True" and tiles > 1
    assert growth <= budget

"""`derain-predict` on a folder of real-world kinds of photos: every size, grey, RGBA, 16-bit and
EXIF-rotated inputs (each kept as it was: format, profile, EXIF, alpha, grey, depth), a broken file,
sub-folders, globs, clashing names, skipping and overwriting, progress and the summary."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from derain.data.io import read_image
from derain.inference import Restorer, read_photo, write_photo
from derain.inference.predict import PredictSummary, print_summary, run, speed_label
from derain.models import ELF
from helpers import run_cli

# stored (height, width) of each input; all odd sizes, none a multiple of 16
SIZES = {"a.png": (40, 52), "grey.png": (37, 61), "rgba.png": (33, 45), "deep16.png": (29, 41)}
TURNED = "sub/photo.jpg"  # stored 40×52 with EXIF orientation 6: upright it is 52×40
BROKEN = "sub/broken.png"
TAKEN = "2024:06:01 14:03:22"  # the turned JPEG's EXIF date, with camera and an ICC profile
CAMERA = "derain test camera"


def _pixels(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    ramp = (rows * 5 + cols * 3) % 256
    noise = np.random.default_rng(seed).integers(0, 40, (height, width, channels))
    return np.clip(ramp[:, :, None] + noise, 0, 255).astype(np.uint8)


def write_inputs(root: Path) -> Path:
    """The input tree: four top-level PNGs of four kinds, a turned JPEG and a broken file below."""
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_pixels(*SIZES["a.png"], 3, 0)).save(root / "a.png")
    Image.fromarray(_pixels(*SIZES["grey.png"], 1, 1)[:, :, 0]).save(root / "grey.png")
    Image.fromarray(_pixels(*SIZES["rgba.png"], 4, 2), "RGBA").save(root / "rgba.png")
    deep = _pixels(*SIZES["deep16.png"], 3, 3).astype(np.uint16) * 257
    cv2.imwrite(str(root / "deep16.png"), deep[:, :, ::-1])  # OpenCV writes BGR, 16 bits kept
    turned = Image.fromarray(_pixels(40, 52, 3, 4))
    exif = turned.getexif()
    exif[0x0112] = 6  # stored sideways: turn 90° clockwise to view
    exif[0x0132], exif[0x0110] = TAKEN, CAMERA  # DateTime, Model
    turned.save(root / TURNED, exif=exif, quality=95, icc_profile=icc_profile())
    (root / BROKEN).write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    return root


def icc_profile() -> bytes:
    """A real ICC profile (Pillow's built-in sRGB), as cameras and editors embed."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def write_checkpoint(path: Path) -> Path:
    """An elf_tiny checkpoint laid out as derain-train writes it (network under `model.`)."""
    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny")
    config = {"_target_": "derain.models.ELF", "width": 24, "depth": 2, "heads": 2, "mam_heads": 1}
    state_dict = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state_dict, "hyper_parameters": {"model": config}}, path)
    return path


def _counts(stdout: str) -> dict[str, int]:
    """The summary table's done / tiled / skipped / failed counts."""
    row = re.findall(r"│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│", stdout)[-1]
    return dict(zip(("done", "tiled", "skipped", "failed"), map(int, row), strict=True))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict")
    write_inputs(root / "photos")
    write_checkpoint(root / "tiny.ckpt")
    return root


@pytest.fixture(scope="module")
def first_run(workspace):
    """The whole tree, recursively, with rain layers."""
    return run_cli(
        "derain-predict",
        "ckpt_path=tiny.ckpt",
        "input=photos",
        "output=derained",
        "recursive=true",
        "save_rain=true",
        cwd=workspace,
        check=False,
    )


def test_every_readable_image_is_derained_at_its_own_size(workspace, first_run):
    out = workspace / "derained"
    for name, size in SIZES.items():
        assert read_image(out / name).shape[:2] == size, name
    assert _counts(first_run.stdout) == {"done": 5, "tiled": 0, "skipped": 0, "failed": 1}
    assert "images/s" in first_run.stdout


def test_sub_folders_are_mirrored_and_exif_rotation_is_applied(workspace, first_run, tmp_path):
    result = read_image(workspace / "derained" / TURNED)
    assert result.shape[:2] == (52, 40)
    restorer = Restorer(_tiny(workspace), device="cpu")
    photo = read_photo(workspace / "photos" / TURNED)
    # a JPEG again, at quality 95: the network's upright result, encoded as such
    write_photo(tmp_path / "expected.jpg", photo.with_pixels(restorer(photo.pixels)))
    np.testing.assert_array_equal(result, read_image(tmp_path / "expected.jpg"))


def test_a_jpeg_stays_a_jpeg_with_its_exif_and_colour_profile_and_upright(workspace, first_run):
    with Image.open(workspace / "derained" / TURNED) as result:
        exif = result.getexif()
        assert result.format == "JPEG" and result.size == (40, 52)  # stored upright
        assert (exif.get(0x0112), exif.get(0x0132), exif.get(0x0110)) == (1, TAKEN, CAMERA)
        profile = result.info["icc_profile"]
    with Image.open(workspace / "photos" / TURNED) as rainy:
        assert profile == rainy.info["icc_profile"]
        assert rainy.getexif().get(0x0112) == 6  # the input is untouched


def test_grey_stays_grey_alpha_stays_and_16_bits_stay_16_bits(workspace, first_run):
    out, photos = workspace / "derained", workspace / "photos"
    with Image.open(out / "grey.png") as grey:
        assert grey.mode == "L"
    with Image.open(out / "rgba.png") as rgba, Image.open(photos / "rgba.png") as original:
        assert rgba.mode == "RGBA"
        assert rgba.getchannel("A").tobytes() == original.getchannel("A").tobytes()
    deep = cv2.imread(str(out / "deep16.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (*SIZES["deep16.png"], 3)
    assert np.any(deep % 257)  # levels between the 8-bit ones: more than 8 bits of result


def test_outputs_are_the_networks_result(workspace, first_run):
    restorer = Restorer(_tiny(workspace), device="cpu")
    for name in SIZES:
        expected = restorer(read_image(workspace / "photos" / name))
        if name == "grey.png":  # grey comes back as the luminance of the network's RGB
            expected = np.repeat((expected @ [0.299, 0.587, 0.114])[:, :, None], 3, axis=2)
        result = read_image(workspace / "derained" / name)
        assert np.abs(result - expected).max() <= 1 / 255 + 1e-6, name


def test_save_rain_writes_the_rain_layer_beside_each_result(workspace, first_run):
    out = workspace / "derained"
    for name in SIZES:
        stem = Path(name).stem
        rainy = read_image(workspace / "photos" / name)
        rain = read_image(out / f"{stem}_rain.png")
        expected = np.clip(rainy - read_image(out / name), 0, 1)
        assert np.abs(rain - expected).max() <= 2 / 255 + 1e-6, name
    assert (out / "sub" / "photo_rain.jpg").is_file()


def test_a_broken_file_is_reported_the_rest_done_and_the_exit_code_is_1(workspace, first_run):
    assert first_run.returncode == 1
    assert re.search(r"failed.*broken\.png", first_run.stdout)
    assert not (workspace / "derained" / "sub" / "broken.png").exists()


def test_nothing_but_results_is_written(workspace, first_run):
    assert sorted(p.name for p in workspace.iterdir()) == ["derained", "photos", "tiny.ckpt"]
    assert not [p for p in (workspace / "derained").rglob(".*")]  # no partial files


def test_existing_outputs_are_skipped_then_redone_with_overwrite(workspace, first_run):
    marker = workspace / "derained" / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(marker)

    rerun = run_cli(*_rerun_args(), cwd=workspace, check=False)
    assert _counts(rerun.stdout) == {"done": 0, "tiled": 0, "skipped": 5, "failed": 1}
    assert read_image(marker).shape[:2] == (4, 4)

    redo = run_cli(*_rerun_args(), "overwrite=true", cwd=workspace, check=False)
    assert _counts(redo.stdout)["done"] == 5
    assert read_image(marker).shape[:2] == SIZES["a.png"]


def test_a_glob_input_with_forced_tiles(workspace, first_run):
    proc = run_cli(
        "derain-predict",
        "ckpt_path=tiny.ckpt",
        "input=photos/*.png",
        "output=globbed",
        "format=jpg",
        "tile=32",
        "overlap=8",
        "max_memory=1GB",
        cwd=workspace,
    )
    written = sorted(p.name for p in (workspace / "globbed").iterdir())
    assert written == ["a.jpg", "deep16.jpg", "grey.jpg", "rgba.jpg"]
    assert _counts(proc.stdout) == {"done": 4, "tiled": 4, "skipped": 0, "failed": 0}
    # what a JPEG cannot hold is said, with the setting that keeps it
    assert re.search(r"rgba\.jpg: the \.jpg format cannot hold the input's alpha", proc.stdout)
    assert re.search(r"deep16\.jpg: .*cannot hold the input's 16 bits.*format=same", proc.stdout)
    shutil.rmtree(workspace / "globbed")


def test_the_input_folder_is_refused_as_output(workspace, compose_config, monkeypatch):
    monkeypatch.chdir(workspace)
    cfg = compose_config("predict", ["ckpt_path=tiny.ckpt", "input=photos", "output=photos"])
    before = sorted(p.name for p in (workspace / "photos").iterdir())
    with pytest.raises(ValueError, match="output=photos is the input folder"):
        run(cfg, Console())
    assert sorted(p.name for p in (workspace / "photos").iterdir()) == before


def test_speed_switches_reach_the_network_and_leave_the_result(
    workspace, first_run, compose_config, monkeypatch
):
    import derain.inference.predict as predict_cli
    import derain.inference.restorer as restorer_module

    calls = []

    def spy(model, **switches):
        calls.append((model, switches))
        # compiling (tens of seconds per image size on CPU) is tested in tests/models
        return real(model, **{**switches, "compile": False})

    real = predict_cli.optimize
    monkeypatch.setattr(predict_cli, "optimize", spy)
    retained = []
    monkeypatch.setattr(restorer_module, "keep_freed_memory", lambda: retained.append(True) or True)
    monkeypatch.chdir(workspace)
    overrides = ["ckpt_path=tiny.ckpt", "input=photos/a.png", "output=contiguous"]
    switches = ["channels_last=false", "compile=true"]  # retain_freed_memory: on by default
    cfg = compose_config("predict", [*overrides, *switches])
    summary = run(cfg, Console())
    assert [p.name for p in summary.done] == ["a.png"]
    ((model, switches),) = calls
    assert switches == {"channels_last": False, "compile": True, "freeze": True}
    assert model.channels_last is False
    assert retained == [True]
    restorer = Restorer(_tiny(workspace), device="cpu")
    assert restorer.model.channels_last is True  # the checkpoint's default layout
    expected = restorer(read_image(workspace / "photos" / "a.png"))
    result = read_image(workspace / "contiguous" / "a.png")
    assert np.abs(result - expected).max() <= 1 / 255 + 1e-6
    shutil.rmtree(workspace / "contiguous")


def _rerun_args() -> tuple[str, ...]:
    return (
        "derain-predict",
        "ckpt_path=tiny.ckpt",
        "input=photos",
        "output=derained",
        "recursive=true",
        "save_rain=true",
    )


def _tiny(workspace: Path) -> ELF:
    from derain.inference import load_model

    return load_model(workspace / "tiny.ckpt")


def test_the_fast_allocator_can_be_turned_off(workspace, compose_config, monkeypatch):
    import derain.inference.restorer as restorer_module

    retained = []
    monkeypatch.setattr(restorer_module, "keep_freed_memory", lambda: retained.append(True) or True)
    monkeypatch.chdir(workspace)
    overrides = ["ckpt_path=tiny.ckpt", "input=photos/a.png", "output=plain"]
    cfg = compose_config("predict", [*overrides, "retain_freed_memory=false"])
    assert [p.name for p in run(cfg, Console()).done] == ["a.png"]
    assert retained == []
    shutil.rmtree(workspace / "plain")


def test_inputs_differing_only_in_extension_are_both_derained_and_reported(tmp_path):
    (tmp_path / "photos").mkdir()
    pixels = _pixels(36, 44, 3, 5)
    Image.fromarray(pixels).save(tmp_path / "photos" / "photo.tiff")
    Image.fromarray(pixels).save(tmp_path / "photos" / "photo.webp", quality=90)
    write_checkpoint(tmp_path / "tiny.ckpt")
    args = ("ckpt_path=tiny.ckpt", "input=photos")
    proc = run_cli("derain-predict", *args, "output=out", "format=png", cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "photo.tiff.png",
        "photo.webp.png",
    ]
    assert "photo.tiff → photo.tiff.png" in proc.stdout
    # in their own formats (the default) the names do not meet
    run_cli("derain-predict", *args, "output=same", cwd=tmp_path)
    with Image.open(tmp_path / "same" / "photo.tiff") as tiff:
        assert tiff.format == "TIFF"
    with Image.open(tmp_path / "same" / "photo.webp") as webp:
        assert webp.format == "WEBP"


def test_an_unwritable_output_folder_stops_the_run_before_any_work(workspace):
    proc = run_cli(
        "derain-predict",
        "ckpt_path=tiny.ckpt",
        "input=photos",
        "output=photos/a.png/derained",  # a folder below a file: nothing can be written
        cwd=workspace,
        check=False,
    )
    assert proc.returncode == 1
    assert re.search(r"output=photos/a\.png/derained cannot be written", proc.stderr)
    assert "deraining" not in proc.stdout  # found before the model was loaded


def test_images_in_sub_folders_left_out_are_counted_with_how_to_take_them(
    workspace, compose_config, monkeypatch
):
    monkeypatch.chdir(workspace)
    console = Console(record=True, width=200)
    cfg = compose_config("predict", ["ckpt_path=tiny.ckpt", "input=photos", "output=top"])
    run(cfg, console)
    assert re.search(
        r"left out 2 image\(s\) in sub-folders of photos: recursive=true", console.export_text()
    )
    shutil.rmtree(workspace / "top")


def test_an_output_folder_inside_the_input_is_left_out_and_said_so(tmp_path, compose_config):
    photos = write_inputs(tmp_path / "photos")
    shutil.rmtree(photos / "sub")
    (photos / "derained").mkdir()
    Image.fromarray(_pixels(20, 24, 3, 6)).save(photos / "derained" / "mine.png")
    write_checkpoint(tmp_path / "tiny.ckpt")
    console = Console(record=True, width=200)
    overrides = [f"ckpt_path={tmp_path / 'tiny.ckpt'}", f"input={photos}", "recursive=true"]
    cfg = compose_config("predict", [*overrides, f"output={photos / 'derained'}"])
    summary = run(cfg, console)
    assert sorted(p.name for p in summary.done) == sorted(SIZES)
    assert re.search(
        r"left out 1 image\(s\) under .*derained, the output folder", console.export_text()
    )
    assert not (photos / "derained" / "derained").exists()


def test_progress_within_an_image_counts_its_tiles(workspace, compose_config, monkeypatch):
    monkeypatch.chdir(workspace)
    terminal = io.StringIO()
    console = Console(file=terminal, width=200, force_terminal=True, color_system=None)
    overrides = ["ckpt_path=tiny.ckpt", "input=photos/a.png", "output=tiled", "tile=32"]
    run(compose_config("predict", [*overrides, "overlap=8"]), console)
    # the tiles' row, with its own time estimate (h:mm:ss), while the image is derained
    assert re.search(r"a\.png: [1-3]/4 tiles .* [1-3]/4 .*\d:\d\d:\d\d", terminal.getvalue())
    shutil.rmtree(workspace / "tiled")


@pytest.mark.parametrize(
    ("per_second", "label"),
    [(2.5, "2.50 images/s"), (1 / 8.64, "8.6 s/image"), (1 / 437.2, "437 s/image")],
)
def test_speed_reads_in_seconds_per_image_when_under_one_a_second(per_second, label):
    assert speed_label(per_second) == label


def test_a_slow_summary_says_seconds_per_image_never_zero_images_per_second():
    console = Console(record=True, width=200)
    print_summary(PredictSummary(done=[Path("big.jpg")], seconds=437.0), console)
    text = console.export_text()
    assert "437 s/image" in text and "0.00" not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_gpu_that_is_not_there_is_named_with_device_auto_and_nothing_is_written(workspace):
    proc = run_cli(
        "derain-predict", "input=photos", "output=on-gpu", "device=cuda", cwd=workspace, check=False
    )
    assert proc.returncode == 1
    assert "device='cuda' names a GPU" in proc.stderr and 'device="auto"' in proc.stderr
    assert "Traceback" not in proc.stderr and "AssertionError" not in proc.stderr
    assert not (workspace / "on-gpu").exists()

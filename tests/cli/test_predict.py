"""`derain-predict` on a folder of real-world kinds of photos: every size, grey, RGBA, 16-bit and
EXIF-rotated inputs, a broken file, sub-folders, globs, skipping and overwriting."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from derain.cli.predict import run
from derain.data.io import read_image
from derain.inference import Restorer
from derain.models import ELF
from helpers import run_cli

# stored (height, width) of each input; all odd sizes, none a multiple of 16
SIZES = {"a.png": (40, 52), "grey.png": (37, 61), "rgba.png": (33, 45), "deep16.png": (29, 41)}
TURNED = "sub/photo.jpg"  # stored 40×52 with EXIF orientation 6: upright it is 52×40
BROKEN = "sub/broken.png"


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
    turned.save(root / TURNED, exif=exif, quality=95)
    (root / BROKEN).write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    return root


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


def test_sub_folders_are_mirrored_and_exif_rotation_is_applied(workspace, first_run):
    result = read_image(workspace / "derained" / "sub" / "photo.png")
    assert result.shape[:2] == (52, 40)
    restorer = Restorer(_tiny(workspace), device="cpu")
    expected = restorer(read_image(workspace / "photos" / TURNED))
    assert np.abs(result - expected).max() <= 1 / 255 + 1e-6


def test_outputs_are_the_networks_result(workspace, first_run):
    restorer = Restorer(_tiny(workspace), device="cpu")
    for name in SIZES:
        expected = restorer(read_image(workspace / "photos" / name))
        result = read_image(workspace / "derained" / name)
        assert np.abs(result - expected).max() <= 1 / 255 + 1e-6, name


def test_save_rain_writes_the_rain_layer_beside_each_result(workspace, first_run):
    out = workspace / "derained"
    for name in [*SIZES, "sub/photo.png"]:
        stem = Path(name).with_suffix("")
        rainy = read_image(workspace / "photos" / (TURNED if name.startswith("sub") else name))
        rain = read_image(out / f"{stem}_rain.png")
        expected = np.clip(rainy - read_image(out / f"{stem}.png"), 0, 1)
        assert np.abs(rain - expected).max() <= 2 / 255 + 1e-6, name


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
    import derain.cli.predict as predict_cli

    calls = []

    def spy(model, **switches):
        calls.append((model, switches))
        # compiling (tens of seconds per image size on CPU) is tested in tests/models
        return real(model, **{**switches, "compile": False})

    real = predict_cli.optimize
    monkeypatch.setattr(predict_cli, "optimize", spy)
    retained = []
    monkeypatch.setattr(predict_cli, "retain_freed_memory", lambda: retained.append(True))
    monkeypatch.chdir(workspace)
    overrides = ["ckpt_path=tiny.ckpt", "input=photos/a.png", "output=contiguous"]
    switches = ["channels_last=false", "compile=true", "retain_freed_memory=true"]
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

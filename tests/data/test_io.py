"""read_image / write_image: every file arrives as H×W×3 float32 in [0, 1]."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from derain.data import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    is_image_file,
    read_image,
    read_image_size,
    to_uint8,
    write_image,
)

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, size=(6, 7, 4), dtype=np.uint8)  # 6 tall, 7 wide, RGBA


def test_rgb_png_is_float32_in_unit_range(tmp_path):
    Image.fromarray(PIXELS[:, :, :3]).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (6, 7, 3)
    assert np.array_equal(np.round(image * 255), PIXELS[:, :, :3])


def test_grey_becomes_three_equal_channels(tmp_path):
    Image.fromarray(PIXELS[:, :, 0]).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (6, 7, 3)
    assert np.array_equal(np.round(image[:, :, 2] * 255), PIXELS[:, :, 0])
    assert np.array_equal(image[:, :, 0], image[:, :, 1])


def test_rgba_drops_alpha(tmp_path):
    Image.fromarray(PIXELS).save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert np.array_equal(np.round(image * 255), PIXELS[:, :, :3])


def test_16bit_grey_is_scaled_by_65535(tmp_path):
    levels = np.array([[0, 257, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), levels)
    assert np.allclose(read_image(tmp_path / "deep.png")[0, :, 0], [0, 1 / 255, 1])


def test_16bit_colour_keeps_all_16_bits(tmp_path):
    rgb = np.array([[[1000, 30000, 65535]]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), rgb[:, :, ::-1])  # OpenCV writes BGR
    assert np.allclose(read_image(tmp_path / "deep.png")[0, 0], rgb[0, 0] / 65535, atol=1e-7)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    rows, cols = np.mgrid[0:24, 0:32]
    ramps = np.stack([rows * 10, cols * 8, np.full_like(rows, 128)], axis=2).astype(np.uint8)
    image = Image.fromarray(ramps)
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: turn 90° clockwise to view
    image.save(tmp_path / f"turned{suffix}", exif=exif, quality=100)
    upright = read_image(tmp_path / f"turned{suffix}") * 255
    assert upright.shape == (32, 24, 3)
    assert read_image_size(tmp_path / f"turned{suffix}") == (32, 24)
    assert np.abs(upright - np.rot90(ramps, k=-1)).mean() < 2  # JPEG's loss
    assert np.abs(upright - np.rot90(ramps, k=1)).mean() > 20


def test_truncated_file_raises_naming_it(tmp_path):
    Image.fromarray(PIXELS[:, :, :3]).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    with pytest.raises(ImageReadError, match=r"cut\.png"):
        read_image(tmp_path / "cut.png")


def test_text_file_with_image_suffix_raises_naming_it(tmp_path):
    (tmp_path / "notes.jpg").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.jpg"):
        read_image(tmp_path / "notes.jpg")
    assert issubclass(ImageReadError, ValueError)


def test_write_image_rounds_to_nearest_level(tmp_path):
    values = np.array([[[100.9, 0.4, 254.6]]], dtype=np.float32) / 255
    write_image(tmp_path / "r.png", values)
    assert np.asarray(Image.open(tmp_path / "r.png")).tolist() == [[[101, 0, 255]]]


def test_write_image_picks_format_by_suffix_and_makes_folders(tmp_path):
    write_image(tmp_path / "deep" / "x.JPG", PIXELS[:, :, :3])
    with Image.open(tmp_path / "deep" / "x.JPG") as image:
        assert image.format == "JPEG"


def test_uint8_round_trips_exactly(tmp_path):
    write_image(tmp_path / "x.png", PIXELS[:, :, :3])
    assert np.array_equal(to_uint8(read_image(tmp_path / "x.png")), PIXELS[:, :, :3])


def test_to_uint8_clips_and_rounds():
    levels = np.array([-0.1, 100.49, 100.51, 300.0]) / 255
    assert to_uint8(levels).tolist() == [0, 100, 101, 255]


def test_image_suffixes_match_in_any_case():
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"} == IMAGE_EXTENSIONS
    assert is_image_file("A.PNG") and is_image_file("b.JpEg")
    assert not is_image_file("Thumbs.db") and not is_image_file("._hidden.png")

"""Photo files in and out: what a file holds besides its colours comes back unchanged (format,
ICC profile, EXIF with the orientation made upright, alpha, grey, 16 bits), and a write is atomic."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from elf_checkpoints import tiny_elf
from PIL import Image, ImageCms

from derain.inference import PhotoReadError, Restorer, read_photo, write_photo

ORIENTATION, DATE_TIME, MODEL, EXIF_IFD, DATE_TAKEN = 0x0112, 0x0132, 0x0110, 0x8769, 0x9003


@pytest.fixture(scope="module")
def profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _levels(shape, seed: int, dtype=np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top + 1, shape).astype(dtype)


def _camera_jpeg(path: Path, profile: bytes) -> Path:
    """A 30×20 (stored) JPEG as a camera writes it: turned by EXIF, dated, with a profile."""
    image = Image.fromarray(_levels((20, 30, 3), 0))
    exif = image.getexif()
    exif[ORIENTATION], exif[DATE_TIME], exif[MODEL] = 6, "2024:06:01 14:03:22", "camera"
    exif.get_ifd(EXIF_IFD)[DATE_TAKEN] = "2024:06:01 14:03:20"
    image.save(path, quality=95, exif=exif, icc_profile=profile)
    return path


def test_a_camera_jpeg_is_read_upright_with_its_profile_and_exif(tmp_path, profile):
    photo = read_photo(_camera_jpeg(tmp_path / "camera.jpg", profile))
    assert photo.pixels.shape == (30, 20, 3) and photo.pixels.dtype == np.float32
    assert (photo.format, photo.bits, photo.grey, photo.alpha) == ("JPEG", 8, False, None)
    assert photo.icc_profile == profile
    exif = Image.Exif()
    exif.load(photo.exif)
    assert (exif[ORIENTATION], exif[DATE_TIME]) == (1, "2024:06:01 14:03:22")


def test_a_written_jpeg_keeps_profile_and_exif_and_is_stored_upright(tmp_path, profile):
    photo = read_photo(_camera_jpeg(tmp_path / "camera.jpg", profile))
    assert write_photo(tmp_path / "out.jpg", photo) == []
    with Image.open(tmp_path / "out.jpg") as result:
        exif = result.getexif()
        assert result.format == "JPEG" and result.size == (20, 30)
        assert result.info["icc_profile"] == profile
        assert (exif[ORIENTATION], exif[DATE_TIME], exif[MODEL]) == (
            1,
            "2024:06:01 14:03:22",
            "camera",
        )
        assert exif.get_ifd(EXIF_IFD)[DATE_TAKEN] == "2024:06:01 14:03:20"
    np.testing.assert_array_equal(read_photo(tmp_path / "out.jpg").pixels.shape, (30, 20, 3))


def test_a_tiffs_exif_keeps_its_data_but_not_the_inputs_layout(tmp_path):
    stored = _levels((20, 30, 3), 10)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[ORIENTATION], exif[DATE_TIME] = 6, "2024:06:01 14:03:22"
    image.save(tmp_path / "in.tif", exif=exif, compression="tiff_lzw")
    photo = read_photo(tmp_path / "in.tif")
    write_photo(tmp_path / "out.tif", photo)
    with Image.open(tmp_path / "out.tif") as result:
        assert result.size == (20, 30) and result.getexif()[DATE_TIME] == "2024:06:01 14:03:22"
        np.testing.assert_array_equal(np.asarray(result), np.rot90(stored, -1))


def test_jpeg_quality_is_a_setting(tmp_path, profile):
    photo = read_photo(_camera_jpeg(tmp_path / "camera.jpg", profile))
    write_photo(tmp_path / "high.jpg", photo)
    write_photo(tmp_path / "low.jpg", photo, quality=40)
    assert (tmp_path / "low.jpg").stat().st_size < (tmp_path / "high.jpg").stat().st_size
    with pytest.raises(ValueError, match="quality=0 must be 1-100"):
        write_photo(tmp_path / "bad.jpg", photo, quality=0)


def test_rgba_keeps_its_alpha_and_colours_exactly(tmp_path):
    rgba = _levels((9, 11, 4), 1)
    Image.fromarray(rgba).save(tmp_path / "in.png")
    photo = read_photo(tmp_path / "in.png")
    assert photo.alpha is not None and photo.pixels.shape == (9, 11, 3)
    write_photo(tmp_path / "out.png", photo)
    with Image.open(tmp_path / "out.png") as result:
        assert result.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(result), rgba)


def test_grey_is_read_as_equal_channels_and_written_as_one(tmp_path):
    grey = _levels((9, 11), 2)
    Image.fromarray(grey).save(tmp_path / "in.png")
    photo = read_photo(tmp_path / "in.png")
    assert photo.grey and np.array_equal(photo.pixels[..., 0], photo.pixels[..., 2])
    write_photo(tmp_path / "out.png", photo)
    with Image.open(tmp_path / "out.png") as result:
        assert result.mode == "L"
        np.testing.assert_array_equal(np.asarray(result), grey)


def test_a_16_bit_colour_png_keeps_16_bits_profile_and_exif(tmp_path, profile):
    deep = _levels((9, 11, 3), 3, np.uint16)
    cv2.imwrite(str(tmp_path / "in.png"), deep[:, :, ::-1])
    photo = read_photo(tmp_path / "in.png")
    assert photo.bits == 16
    exif = Image.Exif()
    exif[DATE_TIME] = "2024:06:01 14:03:22"
    tagged = type(photo)(**{**photo.__dict__, "icc_profile": profile, "exif": exif.tobytes()})
    write_photo(tmp_path / "out.png", tagged)
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1], deep
    )
    with Image.open(tmp_path / "out.png") as result:
        result.load()
        assert result.info["icc_profile"] == profile
        assert result.getexif()[DATE_TIME] == "2024:06:01 14:03:22"


def test_a_16_bit_rgba_tiff_keeps_16_bits_alpha_and_profile(tmp_path, profile):
    deep = _levels((9, 11, 4), 4, np.uint16)
    cv2.imwrite(str(tmp_path / "in.tif"), deep[:, :, [2, 1, 0, 3]])
    photo = read_photo(tmp_path / "in.tif")
    assert photo.bits == 16 and photo.alpha is not None
    tagged = type(photo)(**{**photo.__dict__, "icc_profile": profile})
    write_photo(tmp_path / "out.tif", tagged)
    stored = cv2.imread(str(tmp_path / "out.tif"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(stored[:, :, [2, 1, 0, 3]], deep)
    assert read_photo(tmp_path / "out.tif").icc_profile == profile


def test_16_bit_grey_stays_16_bit_grey(tmp_path):
    grey = _levels((9, 11), 5, np.uint16)
    Image.fromarray(grey).save(tmp_path / "in.png")
    photo = read_photo(tmp_path / "in.png")
    assert photo.grey and photo.bits == 16
    write_photo(tmp_path / "out.tif", photo)
    with Image.open(tmp_path / "out.tif") as result:
        assert result.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(result), grey)


@pytest.mark.parametrize(
    ("source", "suffix", "lost"),
    [
        ("rgba", ".jpg", ["alpha"]),
        ("deep", ".webp", ["16 bits"]),
        ("jpeg", ".bmp", ["colour profile and EXIF"]),
    ],
)
def test_what_a_chosen_format_cannot_hold_is_returned(tmp_path, profile, source, suffix, lost):
    if source == "rgba":
        Image.fromarray(_levels((9, 11, 4), 6)).save(tmp_path / "in.png")
        path = tmp_path / "in.png"
    elif source == "deep":
        cv2.imwrite(str(tmp_path / "in.png"), _levels((9, 11, 3), 7, np.uint16))
        path = tmp_path / "in.png"
    else:
        path = _camera_jpeg(tmp_path / "in.jpg", profile)
    assert write_photo(tmp_path / f"out{suffix}", read_photo(path)) == lost
    assert (tmp_path / f"out{suffix}").is_file()


def test_pixels_of_the_wrong_shape_are_refused_naming_the_file(tmp_path, profile):
    photo = read_photo(_camera_jpeg(tmp_path / "camera.jpg", profile))
    with pytest.raises(ValueError, match=r"cannot write .*result.png: expected H×W×3"):
        write_photo(tmp_path / "result.png", photo.with_pixels(np.zeros((30, 20, 5))))
    assert not (tmp_path / "result.png").exists()


def test_a_write_that_fails_midway_leaves_the_previous_file_and_no_partial_one(
    tmp_path, profile, monkeypatch
):
    photo = read_photo(_camera_jpeg(tmp_path / "camera.jpg", profile))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.jpg").write_bytes(b"the previous result")

    def disk_full(image, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half a jpeg")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_photo(tmp_path / "out" / "result.jpg", photo)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["result.jpg"]
    assert (tmp_path / "out" / "result.jpg").read_bytes() == b"the previous result"


def test_a_damaged_file_is_named_and_a_missing_one_is_not_found(tmp_path):
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    with pytest.raises(PhotoReadError, match="cannot decode image file .*cut.png"):
        read_photo(tmp_path / "cut.png")
    with pytest.raises(FileNotFoundError):
        read_photo(tmp_path / "missing.png")


def test_derain_file_gives_grey_without_a_colour_cast_and_keeps_the_rest(tmp_path, profile):
    grey = np.clip(_levels((40, 52), 8).astype(np.int16) // 2 + 60, 0, 255).astype(np.uint8)
    grey_alpha = np.dstack([grey, _levels((40, 52), 9)])
    Image.fromarray(grey_alpha).save(tmp_path / "in.png", icc_profile=profile)
    restorer = Restorer(tiny_elf(), device="cpu")
    result = restorer.derain_file(tmp_path / "in.png", tmp_path / "out.png", tmp_path / "rain.png")
    assert np.array_equal(result.restored[..., 0], result.restored[..., 1])
    with Image.open(tmp_path / "out.png") as out, Image.open(tmp_path / "rain.png") as rain:
        assert out.mode == "LA" and out.info["icc_profile"] == profile
        np.testing.assert_array_equal(np.asarray(out)[..., 1], grey_alpha[..., 1])
        assert rain.mode == "L"
    # the network's RGB of the same grey photo has a cast: the luminance is what is kept
    rgb = restorer(np.repeat(grey[:, :, None], 3, axis=2).astype(np.float32) / 255)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 0
    luminance = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(result.restored[..., 0], luminance, atol=1e-5)

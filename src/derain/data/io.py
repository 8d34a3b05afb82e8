"""Reading and writing images as float32 H×W×3 arrays in [0, 1].

Every loader in the project goes through `read_image`, so grey, RGBA, palette and 16-bit files,
and photos with an EXIF orientation tag, all arrive in one form.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from derain.image_files import (
    EXIF_ORIENTATION_TAG,
    IMAGE_EXTENSIONS,
    has_16bit_colour,
    is_image_file,  # noqa: F401 (data code reads it from here)
    upright,
)

_JPEG_QUALITY = 95
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ImageReadError(ValueError):
    """A file that exists but cannot be decoded as an image (truncated, corrupt, not an image).

    `path` is the file (None when the error is about several files).
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (any shape) → uint8, as round(clip(x, 0, 1) · 255).

    Halves round up, as MATLAB's im2uint8 does (NumPy's round would send 0.5 to 0).
    """
    return np.floor(np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file into an H×W×3 float32 array in [0, 1].

    Grey and palette images become RGB, an alpha channel is dropped, 16-bit files are scaled by
    1/65535 (8-bit by 1/255), and the EXIF orientation is applied so the array is upright.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file exists but cannot be decoded; the message names it.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if has_16bit_colour(image):
                # Pillow decodes 16-bit RGB PNG/TIFF to 8 bits by truncation; OpenCV keeps all 16.
                orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
                return upright(_read_16bit_colour(path), orientation)
            image.load()
            return _pil_to_float_rgb(ImageOps.exif_transpose(image))
    except FileNotFoundError:
        raise
    except _DECODE_ERRORS as err:
        raise ImageReadError(f"cannot decode image file {path}: {err}", path) from err


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of the upright image, from the file header only (no pixel decoding).

    Raises:
        ImageReadError: the header cannot be parsed; the message names the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = _header_orientation(image)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, *_DECODE_ERRORS) as err:
        raise ImageReadError(f"cannot decode image file {path}: {err}", path) from err
    # orientations 5–8 turn the picture by 90°, swapping height and width
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def decode_image(path: str | os.PathLike) -> tuple[int, int]:
    """Decode every pixel of an image file, as `read_image` does, and return the upright
    (height, width); skips the conversion to float, so checking a data set costs less.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file cannot be decoded; the message names it.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if has_16bit_colour(image):
                return read_image(path).shape[:2]
            image.load()
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, *_DECODE_ERRORS) as err:
        raise ImageReadError(f"cannot decode image file {path}: {err}", path) from err
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save an image as an 8-bit file; the format follows the suffix (.png, .jpg, ...).

    Args:
        path: destination; missing parent folders are created.
        array: H×W, H×W×1 or H×W×3; uint8 as is, or float in [0, 1] (clipped, then rounded to
            the nearest 8-bit level rather than truncated).
    """
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"cannot write {path}: suffix {path.suffix!r} is not one of {sorted(IMAGE_EXTENSIONS)}"
        )
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"cannot write {path}: expected H×W or H×W×3, got shape {array.shape}")
    pixels = array if array.dtype == np.uint8 else to_uint8(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": _JPEG_QUALITY} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(pixels).save(path, **options)


def _header_orientation(image: Image.Image) -> int:
    """EXIF orientation known from the header; 1 (upright) when there is none."""
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow would decode the whole PNG to look for an eXIf chunk after the pixels
        return 1
    return image.getexif().get(EXIF_ORIENTATION_TAG, 1)


def _read_16bit_colour(path: Path) -> np.ndarray:
    import cv2  # albumentations' dependency; only needed for this rare case

    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageReadError(f"cannot decode image file {path}: OpenCV could not read it", path)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    rgb = pixels[:, :, 2::-1]  # BGR(A) → RGB, alpha dropped
    scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(rgb, dtype=np.float32) / np.float32(scale)


def _pil_to_float_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey (Pillow reports "I" for some 16-bit PNGs); values span 0..65535
        grey = np.asarray(image, dtype=np.float32) / np.float32(65535.0)
        return np.repeat(np.clip(grey, 0.0, 1.0)[:, :, None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("LA", "La"):
        image = image.convert("L")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return rgb / np.float32(255.0)

"""Photo files in and out of the network, keeping what the person's file holds.

    photo = read_photo("IMG_0042.jpg")                 # upright float RGB, plus what to keep
    write_photo("out/IMG_0042.jpg", photo.with_pixels(restorer(photo.pixels)))

The network sees upright H×W×3 float RGB; everything else of the file travels around it in the
`Photo` and is written back: the format (a JPEG stays a JPEG, at `quality`), the ICC colour
profile, the EXIF data (with its orientation tag set to 1, since the pixels are stored upright),
the alpha channel unchanged, grey as grey and 16 bits as 16 bits. `derain-predict`, the web page
and `Restorer.derain_file` all read and write photos through here.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from derain.image_files import EXIF_ORIENTATION_TAG, has_16bit_colour, upright
from derain.inference.atomic import replacing

DEFAULT_QUALITY = 95
"""Quality of the JPEG and WebP files written (1-100): visually lossless."""

FULL_COLOUR_QUALITY = 90
"""From this quality up JPEGs keep the colour at full resolution (4:4:4), as photo editors do."""

FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
"""File suffix (lower case) → Pillow's name of the format written."""

_WITH_ALPHA = {"PNG", "TIFF", "WEBP", "BMP"}
_WITH_16_BITS = {"PNG", "TIFF"}
_WITH_METADATA = {"PNG", "TIFF", "WEBP", "JPEG"}  # ICC profile and EXIF
_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284}
    | {290, 291, 292, 293, 317, 320, 322, 323, 324, 325, 338, 339, 340, 341}
    | {513, 514, 530, 531, 532, 34675}
)
"""TIFF tags that describe how the input file stores its pixels (size, strips, compression,
samples, its ICC profile), which a TIFF's EXIF includes: never carried into another file."""
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as Pillow's convert("L")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Photo:
    """A decoded photo and what its file holds besides the colours.

    pixels: H×W×3 float32 RGB in [0, 1], upright (EXIF orientation applied); a grey photo's
        three channels are equal.
    alpha: H×W float32 in [0, 1] (upright), or None: written back unchanged.
    grey: the file is grey (written back as one channel, the luminance of `pixels`).
    bits: 8 or 16 bits per channel in the file.
    format: Pillow's name of the file's format ("JPEG", "PNG", ...), None when not from a file.
    icc_profile: the embedded ICC colour profile, or None.
    exif: the EXIF block with its orientation set to 1 (the pixels are upright), or None.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    grey: bool = False
    bits: int = 8
    format: str | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None

    def with_pixels(self, pixels: np.ndarray) -> Photo:
        """This photo with other H×W×3 pixels (the derained ones), everything else kept."""
        return replace(self, pixels=pixels)


class PhotoReadError(ValueError):
    """A file that exists but cannot be decoded as an image; the message names it."""


def read_photo(path: str | os.PathLike) -> Photo:
    """Decodes an image file into a `Photo` (see there for what is kept).

    Raises:
        FileNotFoundError: the file does not exist.
        PhotoReadError: the file exists but cannot be decoded; the message names it.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            deep = has_16bit_colour(image)  # known from the header, before decoding
            image.load()
            info = _metadata(image)
            if deep:
                return _read_16bit_colour(path, info)
            upright = ImageOps.exif_transpose(image)
            return _from_pil(upright, info)
    except FileNotFoundError:
        raise
    except _DECODE_ERRORS as err:
        raise PhotoReadError(f"cannot decode image file {path}: {err}") from err


def write_photo(path: str | os.PathLike, photo: Photo, quality: int = DEFAULT_QUALITY) -> list[str]:
    """Writes `photo` in the format of `path`'s suffix, atomically (a hidden file renamed over
    `path` once complete), keeping its alpha, grey, bit depth, ICC profile and EXIF wherever the
    format can hold them. Missing parent folders are created.

    Returns what the format could not hold (e.g. ["alpha"] for a JPEG), empty when nothing was
    lost.
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(
            f"cannot write {path}: suffix {path.suffix!r} is not one of "
            f"{', '.join(sorted(FORMATS))}"
        )
    check_quality(quality)
    if photo.pixels.ndim != 3 or photo.pixels.shape[2] != 3:
        raise ValueError(f"cannot write {path}: expected H×W×3 pixels, got {photo.pixels.shape}")
    lost = []
    alpha = photo.alpha
    if alpha is not None and kind not in _WITH_ALPHA:
        alpha, lost = None, [*lost, "alpha"]
    bits = photo.bits
    if bits == 16 and kind not in _WITH_16_BITS:
        bits, lost = 8, [*lost, "16 bits"]
    has_metadata = photo.icc_profile is not None or photo.exif is not None
    if has_metadata and kind not in _WITH_METADATA:
        lost = [*lost, "colour profile and EXIF"]
    if bits == 16 and not photo.grey and kind == "TIFF" and photo.exif is not None:
        lost = [*lost, "EXIF"]  # tifffile writes the profile, not an EXIF block
    channels = luminance(photo.pixels)[:, :, None] if photo.grey else photo.pixels
    if alpha is not None:
        channels = np.concatenate([channels, alpha[:, :, None]], axis=2)
    values = _quantize(channels, bits)
    options = _save_options(kind, photo, quality) if kind in _WITH_METADATA else {}
    with replacing(path) as partial:
        if bits == 16 and values.shape[2] > 1:
            _write_16bit_colour(partial, kind, values, photo)
        else:
            _pil_image(values).save(partial, format=kind, **options)
    return lost


def check_quality(quality: int) -> None:
    """Raises ValueError unless `quality` is a JPEG/WebP quality (1-100)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality={quality} must be 1-100, e.g. quality=95")


def luminance_rgb(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 → H×W×3 with all three channels the luminance (what grey photos come back as)."""
    return np.repeat(luminance(pixels)[:, :, None], 3, axis=2)


def luminance(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 RGB → H×W luminance (ITU-R BT.601 weights, as Pillow's convert("L"))."""
    return (np.asarray(pixels, np.float32) @ _LUMA).astype(np.float32)


def _metadata(image: Image.Image) -> dict:
    """The ICC profile and the EXIF block (orientation set to 1) of an open image."""
    stored = image.getexif()
    orientation = stored.get(EXIF_ORIENTATION_TAG, 1)
    exif = Image.Exif()  # a copy: the image's own still tells exif_transpose how to turn it
    exif.load(stored.tobytes())
    for tag in _LAYOUT_TAGS & set(exif):
        del exif[tag]
    if EXIF_ORIENTATION_TAG in exif:
        exif[EXIF_ORIENTATION_TAG] = 1
    # a CMYK profile describes colours that are no longer there once converted to RGB
    icc = image.info.get("icc_profile") if image.mode != "CMYK" else None
    return {
        "format": image.format,
        "icc_profile": icc or None,
        "exif": exif.tobytes() if len(exif) else None,
        "orientation": orientation,
    }


def _from_pil(image: Image.Image, info: dict) -> Photo:
    mode = image.mode
    kept = {key: info[key] for key in ("format", "icc_profile", "exif")}
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.clip(np.asarray(image, np.float32) / np.float32(65535.0), 0.0, 1.0)
        return Photo(np.repeat(grey[:, :, None], 3, axis=2), grey=True, bits=16, **kept)
    if mode == "F":
        grey = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
        return Photo(np.repeat(grey[:, :, None], 3, axis=2), grey=True, **kept)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode == "La":
        image = image.convert("LA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in mode else "RGB")
    values = np.asarray(image, np.float32) / np.float32(255.0)
    if values.ndim == 2:
        values = values[:, :, None]
    return _split(values, grey=image.mode in ("L", "LA"), bits=8, kept=kept)


def _split(values: np.ndarray, grey: bool, bits: int, kept: dict) -> Photo:
    """H×W×C channels (grey, grey+alpha, RGB or RGBA) → a `Photo`."""
    colour = 1 if grey else 3
    alpha = values[:, :, colour] if values.shape[2] > colour else None
    pixels = values[:, :, :colour]
    if grey:
        pixels = np.repeat(pixels, 3, axis=2)
    return Photo(np.ascontiguousarray(pixels), alpha, grey=grey, bits=bits, **kept)


def _read_16bit_colour(path: Path, info: dict) -> Photo:
    # Pillow decodes 16-bit RGB(A) to 8 bits; OpenCV keeps all 16 (a dependency of albumentations)
    import cv2

    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if stored is None:
        raise PhotoReadError(f"cannot decode image file {path}: OpenCV could not read it")
    if stored.ndim == 2:
        stored = stored[:, :, None]
    order = [2, 1, 0, 3][: stored.shape[2]] if stored.shape[2] >= 3 else [0]
    scale = np.float32(np.iinfo(stored.dtype).max)
    values = stored[:, :, order].astype(np.float32) / scale  # BGR(A) → RGB(A)
    values = upright(values, info["orientation"])
    kept = {key: info[key] for key in ("format", "icc_profile", "exif")}
    return _split(values, grey=values.shape[2] < 3, bits=8 * stored.dtype.itemsize, kept=kept)


def _quantize(values: np.ndarray, bits: int) -> np.ndarray:
    """Float in [0, 1] → uint8 or uint16, rounding halves up (as MATLAB's im2uint8)."""
    dtype = np.uint16 if bits == 16 else np.uint8
    scale = np.iinfo(dtype).max
    return np.floor(np.clip(values, 0.0, 1.0) * scale + 0.5).astype(dtype)


def _pil_image(values: np.ndarray) -> Image.Image:
    """H×W×C uint8 (grey, grey+alpha, RGB, RGBA) or H×W×1 uint16 grey → a Pillow image."""
    # Pillow reads the mode from the shape and dtype: L / I;16, LA, RGB, RGBA
    return Image.fromarray(values[:, :, 0] if values.shape[2] == 1 else values)


def _save_options(kind: str, photo: Photo, quality: int) -> dict:
    options: dict = {}
    if photo.icc_profile is not None:
        options["icc_profile"] = photo.icc_profile
    if photo.exif is not None:
        options["exif"] = photo.exif
    if kind in ("JPEG", "WEBP"):
        options["quality"] = quality
    if kind == "JPEG" and quality >= FULL_COLOUR_QUALITY:
        options["subsampling"] = "4:4:4"  # halving the colour's resolution undoes high quality
    elif kind == "TIFF":
        options["compression"] = "tiff_deflate"
    return options


def _write_16bit_colour(path: Path, kind: str, values: np.ndarray, photo: Photo) -> None:
    """16-bit RGB(A), which Pillow cannot write: TIFF via tifffile (with the ICC profile), PNG
    via OpenCV, with the profile and EXIF added as PNG chunks (OpenCV writes neither)."""
    if kind == "TIFF":
        import tifffile  # a dependency of scikit-image

        tifffile.imwrite(
            path,
            values,
            photometric="rgb",
            compression="zlib",
            extrasamples=("unassalpha",) if values.shape[2] == 4 else None,
            iccprofile=photo.icc_profile,
        )
        return
    import cv2

    order = [2, 1, 0, 3][: values.shape[2]]
    if not cv2.imwrite(str(path), np.ascontiguousarray(values[:, :, order])):
        raise OSError(f"cannot write {path}")
    chunks = []
    if photo.icc_profile is not None:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(photo.icc_profile)))
    if photo.exif is not None:
        exif = photo.exif[6:] if photo.exif.startswith(b"Exif\0\0") else photo.exif
        chunks.append(_png_chunk(b"eXIf", exif))
    if chunks:
        data = path.read_bytes()
        header_end = 8 + 8 + 13 + 4  # signature, then the IHDR chunk (length, type, 13, CRC)
        path.write_bytes(data[:header_end] + b"".join(chunks) + data[header_end:])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

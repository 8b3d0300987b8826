"""Image reading and writing with documented conversion rules.

Reading rules (every reader in the harness goes through :func:`read_image`):
- 8-bit and 16-bit images are scaled to float32 in [0, 1] (16-bit: divided by 65535);
- grayscale (L, I;16, 1-bit) is replicated to three RGB channels;
- an alpha channel is dropped (RGBA/LA -> RGB/L), palette images are expanded;
- the EXIF orientation tag is applied (a portrait photo taken with the camera turned comes back upright);
- an image with more than :data:`MAX_PIXELS` pixels is refused from its header, before any pixel is decoded
  (a decompression bomb: a 214 KB PNG can declare 20000x10000 pixels);
- anything else (CMYK, float TIFFs with NaN, corrupt or truncated files) is rejected
  with an :class:`ImageError` whose one-line message names the file.
Writes are atomic (:mod:`pipelines.common.files`): a killed process never leaves a truncated output.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.common.env import UserError
from pipelines.common.files import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
# Largest image read, in pixels: PIL's own decompression-bomb limit (89.5 M pixels, e.g. 9459x9459; a float RGB
# copy is 1 GiB). ``$INTERIR_MAX_PIXELS`` raises or lowers it.
_limit = os.environ.get("INTERIR_MAX_PIXELS", "")
MAX_PIXELS = int(_limit) if _limit.isdigit() and int(_limit) > 0 else int(Image.MAX_IMAGE_PIXELS)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


class ImageError(UserError):
    """An image that cannot be used; the message names the file and the problem."""


@contextlib.contextmanager
def open_image(path: str | os.PathLike, sha256: str | None = None) -> Iterator[Image.Image]:
    """``Image.open`` with the harness's one-line errors: missing, unreadable, or larger than :data:`MAX_PIXELS`
    (checked from the header, before the pixels are decoded). Yields the lazily opened image.

    With ``sha256``, the file's bytes are read once, hashed and decoded from memory: what is decoded is what
    was verified (a file replaced between a check and a read cannot slip through).
    """
    path = Path(path)
    try:
        source: str | os.PathLike | io.BytesIO = path
        if sha256 is not None:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise ImageError(f"{path}: content does not match the sha256 in the manifest (the dataset changed "
                                 "after synthesis, or a synthesis was interrupted; run 'interir-bench synthesize')")
            source = io.BytesIO(data)
        with Image.open(source) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{path}: declared size {w}x{h} exceeds the limit of {MAX_PIXELS:,} pixels "
                                 "(a decompression bomb? set INTERIR_MAX_PIXELS to raise it)")
            yield img
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: declared size exceeds the limit of {MAX_PIXELS:,} pixels "
                         "(a decompression bomb? set INTERIR_MAX_PIXELS to raise it)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{path}: unreadable or corrupt image ({exc.__class__.__name__})") from None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) as :func:`read_image` returns it (EXIF orientation applied), from the header only."""
    with open_image(path) as img:
        w, h = img.size
        return (h, w) if _orientation(img) in _TRANSPOSED else (w, h)


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a malformed EXIF block: PIL raises assorted errors; treat as no orientation
        return 1
    return value if isinstance(value, int) else 1


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _to_rgb_array(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "RGBa"):
        img, mode = img.convert("RGB"), "RGB"
    if mode in ("LA", "La"):
        img, mode = img.getchannel("L"), "L"
    if mode == "1":
        img, mode = img.convert("L"), "L"
    if mode in ("RGB", "L"):
        # uint8 view first, then one cast: np.asarray(img, dtype=float32) converts through PIL's
        # array interface element by element, 8x slower at 256x256 (same values, bit for bit).
        arr = np.asarray(img).astype(np.float32) / np.float32(255.0)
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img).astype(np.float32) / 65535.0
    elif mode == "I":
        raw = np.asarray(img)
        # 16-bit PNGs open as mode I; values above 65535 mean a 32-bit image we do not support.
        if raw.max(initial=0) > 65535 or raw.min(initial=0) < 0:
            raise ImageError(f"{path}: 32-bit integer images are not supported")
        arr = raw.astype(np.float32) / 65535.0
    else:
        raise ImageError(f"{path}: unsupported image mode {mode!r} (expected RGB, grayscale, RGBA or 16-bit)")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{path}: unexpected array shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike, sha256: str | None = None) -> np.ndarray:
    """Read ``path`` as float32 RGB HxWx3 in [0, 1] following the module's rules; with ``sha256``, only if the
    file's content has that hash (:func:`open_image`)."""
    path = Path(path)
    with open_image(path, sha256) as img:
        img.load()
        if img.mode in ("RGB;16", "RGBA;16", "RGB;16B", "RGBA;16B"):
            raise ImageError(f"{path}: 48/64-bit colour images are not supported by PIL; convert to 8-bit")
        if _orientation(img) != 1:
            img = ImageOps.exif_transpose(img)
        arr = _to_rgb_array(img, path)
    if not np.isfinite(arr).all():
        raise ImageError(f"{path}: image holds NaN or inf values")
    if min(arr.shape[:2]) < 1:
        raise ImageError(f"{path}: empty image")
    return arr


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Float [0,1] -> uint8 with rounding (the quantisation every metric sees)."""
    return np.clip(np.rint(np.clip(arr, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)


def write_image(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write float [0,1] or uint8 RGB ``arr`` atomically (format from the suffix)."""
    data = arr if arr.dtype == np.uint8 else to_uint8(arr)
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".webp": "WEBP"}.get(
        path.suffix.lower(), "PNG"
    )
    with atomic_path(path) as tmp:
        # compress_level=1: synthesis throughput matters more than a few % of disk.
        kwargs = {"compress_level": 1} if fmt == "PNG" else {}
        try:
            Image.fromarray(data).save(tmp, format=fmt, **kwargs)
        except ValueError as exc:  # e.g. larger than the format allows (WebP: 16383 px a side)
            raise ImageError(f"{path}: cannot write as {fmt} ({exc})") from None

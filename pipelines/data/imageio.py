"""Image reading and writing with documented conversion rules.

Reading rules (every reader in the harness goes through :func:`read_image`):
- 8-bit and 16-bit images are scaled to float32 in [0, 1] (16-bit: divided by 65535);
- grayscale (L, I;16, 1-bit) is replicated to three RGB channels;
- an alpha channel is dropped (RGBA/LA -> RGB/L), palette images are expanded;
- anything else (CMYK, float TIFFs with NaN, corrupt or truncated files) is rejected
  with an :class:`ImageError` whose one-line message names the file.
Writes are atomic (:mod:`pipelines.common.files`): a killed process never leaves a truncated output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.common.env import UserError
from pipelines.common.files import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class ImageError(UserError):
    """An image that cannot be used; the message names the file and the problem."""


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


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read ``path`` as float32 RGB HxWx3 in [0, 1] following the module's rules."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGB;16", "RGBA;16", "RGB;16B", "RGBA;16B"):
                raise ImageError(f"{path}: 48/64-bit colour images are not supported by PIL; convert to 8-bit")
            arr = _to_rgb_array(img, path)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{path}: unreadable or corrupt image ({exc.__class__.__name__})") from None
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
        Image.fromarray(data).save(tmp, format=fmt, **kwargs)

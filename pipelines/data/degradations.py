"""The three MDIR degradation operators (haze -> rain -> noise) and the depth maps haze needs.

All operators take float32 RGB HxWx3 images in [0, 1] and return the input object itself when
their level is 0, so "level 0 = component off" holds bit for bit. Readings of the paper's
"level" (TANet's, see docs/dataset.md):

- haze: level = aerosol visibility range V in metres (Koschmieder: extinction 3.912 / V), a
  homogeneous version of TANet's FoHIS model: I = J t + A (1 - t), t = exp(-(3.912 / V) d),
  with airlight A = (201, 225, 225) / 255 (RGB) and d a depth map in metres;
- rain: level = TANet's streak-seed density (seeds kept where u ~ U(0,256) >= 256 - level / 100);
- noise: level = Gaussian sigma on the 0-255 scale.

Depth: real depth maps are used up to scale (their units differ: millimetres, bit-shifted
millimetres, disparity) and rescaled so their 99th percentile is ``D_FAR`` metres; images
without one get a proxy (``ground_plane`` or ``dark_channel``) spanning about
[``D_NEAR``, ``D_FAR``]. ``D_FAR`` = 30 m matches TANet's NYU depth (<= 10 m) times 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipelines.common.env import UserError
from pipelines.data.imageio import MAX_PIXELS, open_image

AIRLIGHT_RGB = np.array([201.0, 225.0, 225.0], dtype=np.float32) / 255.0  # TANet's (B,G,R) = (225,225,201)
KOSCHMIEDER = 3.912  # ln(1/0.02): contrast threshold 2 %
D_NEAR = 1.0  # metres; TANet sets zero depth to 1
D_FAR = 30.0  # metres; TANet's NYU depth (<= 10 m) x 3
CAMERA_HEIGHT = 1.8  # metres (TANet's FoHIS camera altitude)
VERTICAL_FOV_DEG = 64.0  # TANet's FoHIS field of view
HORIZON_ROW = 1.0 / 3.0  # ground-plane proxy: horizon a third of the way down the frame

RAIN_KERNEL_LENGTH = 20  # TANet's motion-kernel length
RAIN_ANGLES = (-45, -30, -15, 0, 15, 30, 45)  # TANet's streak angles (degrees)
RAIN_OPACITY = 0.8  # TANet's streak blend weight
_SEED_FILTER = np.array([[0, 0.1, 0], [0.1, 8, 0.1], [0, 0.1, 0]], dtype=np.float32)

DEPTH_PROXIES = ("ground_plane", "dark_channel")
OPERATOR_ORDER = ("haze", "rain", "noise")


@dataclass(frozen=True)
class Levels:
    """Degradation levels; 0 switches a component off (haze: visibility V in metres)."""

    haze: float = 0.0
    rain: float = 0.0
    noise: float = 0.0

    def validate(self) -> None:
        for name, value, hi in (("haze", self.haze, None), ("rain", self.rain, 300.0), ("noise", self.noise, 255.0)):
            if not math.isfinite(value) or value < 0 or (hi is not None and value > hi):
                bound = f"[0, {hi:g}]" if hi is not None else ">= 0"
                raise UserError(f"{name} level {value!r} out of range (expected {bound}; 0 = off)")


# ----------------------------------------------------------------------------- operators


def transmission(depth_m: np.ndarray, visibility_m: float) -> np.ndarray:
    """t = exp(-(3.912 / V) d): the fraction of scene light that survives ``depth_m`` metres."""
    return np.exp(-(KOSCHMIEDER / float(visibility_m)) * depth_m.astype(np.float32)).astype(np.float32)


def add_haze(img: np.ndarray, visibility_m: float, depth_m: np.ndarray | None) -> np.ndarray:
    """Homogeneous atmospheric scattering with visibility ``visibility_m`` (0 = off, returns ``img``)."""
    if visibility_m == 0:
        return img
    if visibility_m < 0:
        raise UserError(f"haze visibility must be >= 0 metres, got {visibility_m}")
    if depth_m is None:
        raise ValueError("add_haze needs a depth map (metres)")
    if depth_m.shape != img.shape[:2]:
        raise ValueError(f"depth map shape {depth_m.shape} does not match image {img.shape[:2]}")
    t = transmission(depth_m, visibility_m)[:, :, None]
    out = img * t + AIRLIGHT_RGB * (1.0 - t)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def rain_kernel(angle_deg: float, length: int = RAIN_KERNEL_LENGTH) -> np.ndarray:
    """TANet's motion kernel: a length x length diagonal, rotated by (angle - 45) deg, scaled 1 - length/100."""
    diag = np.eye(length, dtype=np.float32)
    rot = cv2.getRotationMatrix2D((length / 2, length / 2), angle_deg - 45, 1 - length / 100.0)
    return cv2.warpAffine(diag, rot, (length, length))


def rain_layer(shape: tuple[int, int], level: float, rng: np.random.Generator) -> np.ndarray:
    """Streak map r in [0, 1] (HxW float32): seeds -> 3x3 filter -> motion blur -> min-max normalise."""
    h, w = shape
    seeds = rng.random((h, w), dtype=np.float32) * np.float32(256.0)
    angle = RAIN_ANGLES[int(rng.integers(len(RAIN_ANGLES)))]
    seeds[seeds < np.float32(256.0 - level * 0.01)] = 0.0
    streaks = cv2.filter2D(seeds, -1, _SEED_FILTER, borderType=cv2.BORDER_REFLECT_101)
    streaks = cv2.filter2D(streaks, -1, rain_kernel(angle), borderType=cv2.BORDER_REFLECT_101)
    lo, hi = float(streaks.min()), float(streaks.max())
    if hi - lo <= 0:
        return np.zeros((h, w), dtype=np.float32)
    return ((streaks - np.float32(lo)) * np.float32(1.0 / (hi - lo))).astype(np.float32, copy=False)


def add_rain(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """TANet rain streaks at seed density ``level`` in [0, 300] (0 = off): out = img (1 - r) + 0.8 r."""
    if level == 0:
        return img
    if not 0 < level <= 300:
        raise UserError(f"rain level must be in [0, 300], got {level}")
    r = rain_layer(img.shape[:2], level, rng)[:, :, None]
    out = img * (1.0 - r) + np.float32(RAIN_OPACITY) * r
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def add_noise(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise, sigma = level / 255 (0 = off), then clipped to [0, 1]."""
    if level == 0:
        return img
    if level < 0:
        raise UserError(f"noise level must be >= 0, got {level}")
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(level / 255.0)
    out = img + noise
    return np.clip(out, 0.0, 1.0, out=out)


def degrade(img: np.ndarray, levels: Levels, depth_m: np.ndarray | None, seed: int) -> np.ndarray:
    """Apply haze -> rain -> noise with ``levels``; every random draw comes from ``seed``.

    Rain and noise draw from independent child streams of ``seed``, so the noise field of an
    output does not change when rain is switched on or off.
    """
    levels.validate()
    rain_ss, noise_ss = np.random.SeedSequence(int(seed)).spawn(2)
    out = img.astype(np.float32, copy=False)
    out = add_haze(out, levels.haze, depth_m)
    out = add_rain(out, levels.rain, np.random.default_rng(rain_ss))
    out = add_noise(out, levels.noise, np.random.default_rng(noise_ss))
    return out


# ----------------------------------------------------------------------------- depth


def ground_plane_depth(h: int, w: int) -> np.ndarray:
    """Depth (m) of a flat ground seen by a level camera 1.8 m up: grows towards the horizon row.

    Rows at or above the horizon (sky, far scenery) get ``D_FAR``; with TANet's 64 deg vertical
    field of view the bottom row is about 2.2 m away. Constant along each row.
    """
    f = (h / 2.0) / math.tan(math.radians(VERTICAL_FOV_DEG / 2.0))
    below = (np.arange(h, dtype=np.float32) + 0.5) - np.float32(HORIZON_ROW * h)
    with np.errstate(divide="ignore"):
        d = np.where(below > 0, CAMERA_HEIGHT * f / np.maximum(below, 1e-6), D_FAR)
    d = np.clip(d, D_NEAR, D_FAR).astype(np.float32)
    return np.repeat(d[:, None], w, axis=1)


def dark_channel_depth(img: np.ndarray, patch: int = 15) -> np.ndarray:
    """Depth proxy from the dark channel prior (He et al.): hazier-looking pixels are farther.

    t_est = 1 - 0.95 dark(I / A); relative depth -ln t_est, smoothed, mapped to [D_NEAR, D_FAR].
    Weaker than the ground plane on clean photos (bright surfaces read as far); kept as an option.
    """
    norm = img / AIRLIGHT_RGB
    dark = cv2.erode(norm.min(axis=2).astype(np.float32), np.ones((patch, patch), np.uint8))
    t_est = np.clip(1.0 - 0.95 * dark, 0.05, 1.0)
    rel = cv2.blur(-np.log(t_est).astype(np.float32), (patch, patch))
    lo, hi = float(rel.min()), float(rel.max())
    scaled = (rel - lo) / (hi - lo) if hi > lo else np.zeros_like(rel)
    return (D_NEAR + (D_FAR - D_NEAR) * scaled).astype(np.float32)


def proxy_depth(img: np.ndarray, proxy: str) -> np.ndarray:
    """Depth (m) for an image without a depth map, by the ``synthesize.depth_proxy`` switch."""
    if proxy == "ground_plane":
        return ground_plane_depth(*img.shape[:2])
    if proxy == "dark_channel":
        return dark_channel_depth(img)
    raise UserError(f"unknown depth proxy {proxy!r} (choose one of {', '.join(DEPTH_PROXIES)})")


def _fill_invalid(z: np.ndarray, valid: np.ndarray, path: Path) -> np.ndarray:
    if not valid.any():
        raise UserError(f"{path}: depth map has no valid pixels")
    if valid.all():
        return z
    from scipy import ndimage

    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return z[tuple(idx)]


def load_depth(path: str | Path) -> np.ndarray:
    """Read a depth file and return depth in metres up to scale (99th percentile = ``D_FAR``).

    ``.png``/``.tif``: depth values (uint16, any unit), 0 = invalid. ``.npz``/``.npy`` whose name
    contains ``disp``: disparity, depth = 1 / disparity, non-finite or <= 0 = invalid; other
    ``.npz``/``.npy``: depth values, non-finite or <= 0 = invalid. Invalid pixels take the depth of
    the nearest valid pixel; the result is clipped to [``D_NEAR``, ``D_FAR``].
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, mmap_mode="r")  # the header only: the size is checked before reading
            if data.size > MAX_PIXELS:
                raise UserError(f"{path}: depth map of shape {data.shape} exceeds the limit of {MAX_PIXELS:,} pixels")
            raw = np.asarray(data, dtype=np.float64)
        elif path.suffix.lower() == ".npz":
            with np.load(path) as data:
                declared = sum(info.file_size for info in data.zip.infolist())  # uncompressed, from the zip
                if declared > 8 * MAX_PIXELS + 4096:
                    raise UserError(f"{path}: {declared:,} bytes uncompressed exceeds the limit of {MAX_PIXELS:,} "
                                    "float64 pixels")
                raw = np.asarray(data[data.files[0]], dtype=np.float64)
        else:
            with open_image(path) as im:
                raw = np.asarray(im).astype(np.float64)
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError) as exc:
        raise UserError(f"{path}: unreadable depth file ({exc.__class__.__name__})") from None
    if raw.ndim == 3:
        raw = raw[:, :, 0]
    if raw.ndim != 2:
        raise UserError(f"{path}: depth map must be 2-D, got shape {raw.shape}")
    valid = np.isfinite(raw) & (raw > 0)
    if "disp" in path.stem.lower():
        z = np.zeros_like(raw)
        z[valid] = 1.0 / raw[valid]
    else:
        z = np.where(valid, raw, 0.0)
    z = _fill_invalid(z, valid, path)
    far = float(np.percentile(z[valid], 99))
    return np.clip(z * (D_FAR / far), D_NEAR, D_FAR).astype(np.float32)

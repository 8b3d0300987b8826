"""PSNR and SSIM with the conventions stated once; pyiqa is the reference implementation.

Convention (what every reported number means):
- inputs are quantised to uint8 first (restored output clamped to [0,1], rounded to
  1/255 steps), as when a restored PNG is saved and scored;
- ``psnr``/``ssim``: on RGB (SSIM averaged over the three channels, pyiqa ``ssimc``);
- ``psnr_y``/``ssim_y``: on the Y channel of BT.601 YCbCr (MATLAB ``rgb2ycbcr``: Y in
  [16, 235], rounded) -- pyiqa's ``color_space='ycbcr'``; pyiqa's default Y is YIQ luma,
  which reads 1.32 dB lower, so it is never used;
- SSIM: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, valid
  filtering, contrast-structure term clipped at 0 (Wang et al. 2004 / the MATLAB
  reference, as pyiqa), no border crop; PSNR of identical images is capped by pyiqa's
  eps at 80 dB (RGB, range 1) or 128 dB (Y, range 255).

Two backends behind one :class:`Scorer` interface:
- ``"fast"`` (the default): PSNR is pyiqa's formula with pyiqa's operations in pyiqa's order (:func:`psnr`,
  bit-identical to ``pyiqa.archs.psnr_arch.psnr``, tested; importing pyiqa pulls torchvision and costs every
  evaluation process about 2.5 s); the RGB -> Y conversion is pyiqa's
  formula written per channel (:func:`rgb_to_y`, equal to pyiqa's on all 2^24 uint8 colours but rounding ties,
  tested; it avoids pyiqa's matmul on a permuted copy); SSIM is a float32
  separable Gaussian filter (on the CPU OpenCV's ``sepFilter2D``, one channel at a time; on a GPU
  shifted multiply-adds in torch, :func:`gaussian_filter_valid`), on inputs
  centred by their per-image mean (variances are shift-invariant, and centring removes
  the float32 cancellation in E[x^2] - mu^2). pyiqa's SSIM casts to float64 and runs a
  dense 11x11 conv, which is slow on the CPU (figures in ``docs/engine.md`` §7);
- ``"pyiqa"``: ``pyiqa.create_metric`` for all four (the reference).
Validation: ``tests/test_metrics.py`` checks the fast backend against pyiqa to 1e-4 on
every metric (noise, blur, flat and saturated images, odd sizes), and both against
closed forms and scikit-image (MATLAB convention) -- see ``docs/engine.md`` for figures.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from pipelines.common import env

METRIC_KEYS = ("psnr", "ssim", "psnr_y", "ssim_y")
BACKENDS = ("fast", "pyiqa")
SSIM_WIN, SSIM_SIGMA = 11, 1.5


def gaussian_1d(size: int = SSIM_WIN, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', 11, 1.5)``."""
    r = (size - 1) / 2.0
    xs = torch.arange(size, dtype=torch.float64) - r
    g = torch.exp(-(xs * xs) / (2.0 * sigma * sigma))
    return g / g.sum()


def ssim_fast(x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Mean SSIM per image of (B,C,H,W) tensors on the ``data_range`` scale (channels averaged).

    Same formula as pyiqa's ``ssim`` (valid filtering, ReLU on the contrast-structure
    map), in float32 with a separable window and mean-centred inputs.
    """
    return ssim_per_channel(x, y, data_range).mean(dim=1)


def ssim_per_channel(x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0,
                     impl: str = "auto") -> torch.Tensor:
    """Mean SSIM of each channel, shape (B, C).

    ``impl``: ``"cv2"`` filters one channel at a time with OpenCV and NumPy (CPU, float32; the
    default there), ``"torch"`` filters all maps of the batch in one pass of torch ops (any device;
    the default on GPUs). The two agree to float32 rounding (tested). The per-channel path is the CPU
    default: the five maps of a channel stay in the L2 cache, where the batched torch path's buffers
    (5 MB at 256x256) do not (``docs/engine.md`` §4).
    """
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch {tuple(x.shape)} vs {tuple(y.shape)}")
    b, c, h, w = x.shape
    if min(h, w) < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN} pixels, got {h}x{w}")
    if impl not in ("auto", "cv2", "torch"):
        raise ValueError(f"unknown SSIM implementation {impl!r} (auto, cv2, torch)")
    if impl == "cv2" or (impl == "auto" and x.device.type == "cpu"):
        xs = x.detach().to("cpu", torch.float32).contiguous().numpy()
        ys = y.detach().to("cpu", torch.float32).contiguous().numpy()
        vals = [[_ssim_plane_cv2(xs[i, j], ys[i, j], data_range) for j in range(c)] for i in range(b)]
        return torch.tensor(vals, dtype=torch.float64)
    return _ssim_torch(x, y, data_range)


def _ssim_constants(data_range: float) -> tuple[float, float]:
    return (0.01 * data_range) ** 2, (0.03 * data_range) ** 2


@lru_cache(maxsize=4)
def _taps(size: int, sigma: float) -> np.ndarray:
    return gaussian_1d(size, sigma).to(torch.float32).numpy()


def _ssim_plane_cv2(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Mean SSIM of one (H, W) float32 channel: OpenCV's ``sepFilter2D`` for the window, NumPy in place.

    The maps are filtered and combined at full size and only the 'valid' interior is averaged: the
    arithmetic is per pixel, so the interior values are those of cropping first, and contiguous
    arrays run NumPy's SIMD loops. ``x^2`` and ``y^2`` get a window each: filtering their sum once
    saves a window but moved SSIM-Y of a saturated pair 1.4e-5 away from pyiqa (float32
    cancellation in ``E[x^2] + E[y^2] - mu1^2 - mu2^2``), against 2e-7 this way.
    """
    import cv2  # opencv-python-headless: a dependency of pyiqa, declared by this project too

    h, w = x.shape
    r = SSIM_WIN // 2
    g = _taps(SSIM_WIN, SSIM_SIGMA)
    c1, c2 = _ssim_constants(data_range)
    # Centred on the mean level so that the second moments keep float32 precision.
    centre = np.float32(0.5 * (x.mean(dtype=np.float64) + y.mean(dtype=np.float64)))
    xc, yc = x - centre, y - centre

    def window(m: np.ndarray) -> np.ndarray:
        # The border values (reflected) are computed and never averaged.
        return cv2.sepFilter2D(m, cv2.CV_32F, g, g, borderType=cv2.BORDER_REFLECT_101)

    mu1, mu2, exy = window(xc), window(yc), window(xc * yc)
    np.square(xc, out=xc)
    np.square(yc, out=yc)
    den = window(xc)  # E[x^2]
    den -= np.square(mu1, out=xc)  # xc, yc: scratch from here on
    den += window(yc)  # + E[y^2]
    den -= np.square(mu2, out=yc)
    den += c2
    # contrast-structure: (2 s12 + C2) / (s11 + s22 + C2), clipped at 0 as pyiqa
    m12 = mu1 * mu2
    num = exy
    num -= m12
    num *= 2
    num += c2
    num /= den
    cs = np.maximum(num, 0, out=num)
    # luminance on the un-centred means mu = mu_c + centre
    mu1 += centre
    mu2 += centre
    lum = np.multiply(mu1, mu2, out=m12)
    lum *= 2
    lum += c1
    np.square(mu1, out=mu1)
    np.square(mu2, out=mu2)
    mu1 += mu2
    mu1 += c1
    lum /= mu1
    lum *= cs
    return float(lum[r : h - r, r : w - r].mean(dtype=np.float64))


def _ssim_torch(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """All channels of the batch in one grouped separable filtering pass (torch ops, any device)."""
    b, c, h, w = x.shape
    centre = 0.5 * (x.float().mean(dim=(-2, -1), keepdim=True) + y.float().mean(dim=(-2, -1), keepdim=True))
    # The five maps to filter, written in place into one buffer (no stack copy).
    buf = torch.empty((b, c, 5, h, w), dtype=torch.float32, device=x.device)
    xc, yc = buf[:, :, 0], buf[:, :, 1]
    torch.sub(x, centre, out=xc)
    torch.sub(y, centre, out=yc)
    torch.mul(xc, xc, out=buf[:, :, 2])
    torch.mul(yc, yc, out=buf[:, :, 3])
    torch.mul(xc, yc, out=buf[:, :, 4])
    f = gaussian_filter_valid(buf)
    mu1c, mu2c, exx, eyy, exy = f.unbind(dim=2)
    c1, c2 = _ssim_constants(data_range)
    mu12c = mu1c * mu2c
    # contrast-structure: (2 s12 + C2) / (s11 + s22 + C2), clipped at 0 as pyiqa
    num = exy.sub_(mu12c).mul_(2).add_(c2)
    den = exx.add_(eyy).sub_(mu1c * mu1c).sub_(mu2c * mu2c).add_(c2)
    cs = num.div_(den).clamp_(min=0)
    # luminance on the un-centred means mu = mu_c + centre
    mu1, mu2 = mu1c.add_(centre), mu2c.add_(centre)
    lum = (mu1 * mu2).mul_(2).add_(c1).div_(mu1.square_().add_(mu2.square_()).add_(c1))
    return lum.mul_(cs).mean(dim=(-2, -1))


def gaussian_filter_valid(maps: torch.Tensor, size: int = SSIM_WIN, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Separable Gaussian filtering of the last two dims, 'valid' borders: (..., H, W) -> (..., H-k+1, W-k+1).

    Written as k shifted multiply-adds per direction: on the CPU this measured about 2.5x cheaper
    than a depthwise ``conv2d`` with 1xk and kx1 kernels (oneDNN has no fast path for them).
    """
    g = [float(v) for v in gaussian_1d(size, sigma)]
    h, w = maps.shape[-2] - size + 1, maps.shape[-1] - size + 1
    rows = torch.mul(maps[..., :, 0:w], g[0])
    for k in range(1, size):
        rows.add_(maps[..., :, k : k + w], alpha=g[k])
    out = torch.mul(rows[..., 0:h, :], g[0])
    for k in range(1, size):
        out.add_(rows[..., k : k + h, :], alpha=g[k])
    return out


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of (B,3,H,W) RGB in [0,1] on the [16, 235] scale, rounded: (B,1,H,W).

    pyiqa's ``to_y_channel(x, 255, 'ycbcr')`` per channel instead of a matmul on a permuted copy;
    equal to it on every uint8 colour whose luma is not a rounding tie (x.5), where the float32 summation
    order of pyiqa's matmul decides and differs between CPUs (tests/test_metrics.py).
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (r * 65.481).add_(g * 128.553).add_(b * 24.966).add_(16.0).round_()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """Per-image PSNR of (B, C, H, W) batches: ``pyiqa.archs.psnr_arch.psnr`` without the colour conversion,
    the same torch operations in the same order, so the same bits (tests/test_metrics.py)."""
    mse = torch.mean((x - y) ** 2, dim=[1, 2, 3])
    return 10 * torch.log10(data_range**2 / (mse + eps))


def psnr_closed_form(mse: float, data_range: float = 1.0, eps: float = 1e-8) -> float:
    """``10 log10(range^2 / (mse + eps))``: what pyiqa computes (eps caps identical images)."""
    return 10.0 * math.log10(data_range**2 / (mse + eps))


class Scorer:
    """Computes the four metrics for batches of (restored, target) images in [0, 1].

    ``backend="fast"`` (default) or ``"pyiqa"`` (reference); both give the same numbers
    to 1e-4 (tested), the fast one several times quicker.
    """

    def __init__(self, device: str | torch.device = "cpu", backend: str = "fast") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown metrics backend {backend!r} (choose {', '.join(BACKENDS)})")
        env.apply_defaults()
        self.device = torch.device(device)
        self.backend = backend
        if backend == "pyiqa":
            import pyiqa  # heavy import (torchvision, cv2): only for the reference backend

            mk = lambda *a, **k: pyiqa.create_metric(*a, device=self.device, as_loss=False, **k)  # noqa: E731
            self._psnr = mk("psnr", test_y_channel=False)
            self._psnr_y = mk("psnr", test_y_channel=True, color_space="ycbcr", data_range=255)
            self._ssim = mk("ssimc")
            self._ssim_y = mk("ssim", color_space="ycbcr")

    @staticmethod
    def levels(x: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> the uint8 levels 0..255 (float), clamped and rounded as a saved PNG."""
        return x.clamp(0, 1).mul_(255.0).round_()

    @classmethod
    def quantize(cls, x: torch.Tensor) -> torch.Tensor:
        return cls.levels(x).div_(255.0)

    @torch.no_grad()
    def __call__(self, restored: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image metrics (tensors of shape (B,)) on uint8-quantised inputs."""
        if restored.shape != target.shape:
            raise ValueError(f"shape mismatch {tuple(restored.shape)} vs {tuple(target.shape)}")
        if self.backend == "pyiqa":
            x = self.quantize(restored.to(self.device, torch.float32))
            y = self.quantize(target.to(self.device, torch.float32))
            out = {"psnr": self._psnr(x, y), "ssim": self._ssim(x, y),
                   "psnr_y": self._psnr_y(x, y), "ssim_y": self._ssim_y(x, y)}
        else:
            # uint8 levels 0..255 (as floats) for SSIM, and the same values on [0, 1] for PSNR and Y,
            # as pyiqa sees them after quantize().
            qx, qy = (self.levels(t.to(self.device, torch.float32)) for t in (restored, target))
            x, y = qx / 255.0, qy / 255.0
            xy, yy = rgb_to_y(x), rgb_to_y(y)  # rounded, as pyiqa's to_y_channel
            out = {
                "psnr": psnr(x, y, data_range=1.0),
                "ssim": ssim_per_channel(qx, qy).mean(dim=1),
                "psnr_y": psnr(xy, yy, data_range=255.0),
                "ssim_y": ssim_per_channel(xy, yy)[:, 0],
            }
        return {k: v.flatten().cpu() for k, v in out.items()}

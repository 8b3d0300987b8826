"""PSNR and SSIM through pyiqa, with the conventions stated once.

Convention (what every reported number means):
- inputs are quantised to uint8 first (restored output clamped to [0,1], rounded to
  1/255 steps), as when a restored PNG is saved and scored;
- ``psnr``/``ssim``: on RGB (SSIM averaged over the three channels, pyiqa ``ssimc``);
- ``psnr_y``/``ssim_y``: on the Y channel of BT.601 YCbCr (MATLAB ``rgb2ycbcr``: Y in
  [16, 235], rounded) -- pyiqa's ``color_space='ycbcr'``; pyiqa's default Y is YIQ luma,
  which reads 1.32 dB lower, so it is never used;
- SSIM: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255
  (Wang et al. 2004 / the MATLAB reference), no border crop; PSNR of identical images is
  capped by pyiqa's eps at 80 dB (RGB, range 1) or 128 dB (Y, range 255).
These are calibrated in ``tests/test_metrics.py`` against closed forms and scikit-image.
"""

from __future__ import annotations

import torch

from pipelines import env

METRIC_KEYS = ("psnr", "ssim", "psnr_y", "ssim_y")


class Scorer:
    """Computes the four metrics for batches of (restored, target) images in [0, 1]."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        env.apply_defaults()
        import pyiqa  # heavy import (torchvision, cv2): only when scoring

        self.device = torch.device(device)
        mk = lambda *a, **k: pyiqa.create_metric(*a, device=self.device, as_loss=False, **k)  # noqa: E731
        self._psnr = mk("psnr", test_y_channel=False)
        self._psnr_y = mk("psnr", test_y_channel=True, color_space="ycbcr", data_range=255)
        self._ssim = mk("ssimc")
        self._ssim_y = mk("ssim", color_space="ycbcr")

    @staticmethod
    def quantize(x: torch.Tensor) -> torch.Tensor:
        return torch.round(x.clamp(0, 1) * 255.0) / 255.0

    @torch.no_grad()
    def __call__(self, restored: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image metrics (tensors of shape (B,)) on uint8-quantised inputs."""
        if restored.shape != target.shape:
            raise ValueError(f"shape mismatch {tuple(restored.shape)} vs {tuple(target.shape)}")
        x = self.quantize(restored.to(self.device, torch.float32))
        y = self.quantize(target.to(self.device, torch.float32))
        return {
            "psnr": self._psnr(x, y).flatten().cpu(),
            "ssim": self._ssim(x, y).flatten().cpu(),
            "psnr_y": self._psnr_y(x, y).flatten().cpu(),
            "ssim_y": self._ssim_y(x, y).flatten().cpu(),
        }

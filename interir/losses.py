"""Training losses by name (``train.loss``; a model card's recipe names its own).

- ``l1_fft``: InterIR's, L1 + ``fft_weight`` * L1 of the 2-D FFT (FSNet's recipe, paper Sec. 3.4);
- ``charbonnier_fft``: DeepSN-Net's "mix3", Charbonnier (eps 1e-3) + ``fft_weight`` * the same FFT term;
- ``l1``: Restormer's and PromptIR's.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class L1FFTLoss(nn.Module):
    """``L1(pred, gt) + weight * L1(FFT(pred), FFT(gt))`` with real and imaginary parts stacked."""

    def __init__(self, fft_weight: float = 0.1) -> None:
        super().__init__()
        self.fft_weight = fft_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        spatial = F.l1_loss(pred, target)
        if self.fft_weight == 0:
            return spatial
        return spatial + self.fft_weight * fft_l1(pred, target)


def fft_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the 2-D FFTs (real and imaginary parts stacked), in float32 even under autocast."""
    fp = torch.view_as_real(torch.fft.fft2(pred.float(), dim=(-2, -1)))
    ft = torch.view_as_real(torch.fft.fft2(target.float(), dim=(-2, -1)))
    return F.l1_loss(fp, ft)


class CharbonnierFFTLoss(nn.Module):
    """``mean(sqrt((pred - gt)^2 + eps^2)) + weight * L1(FFT(pred), FFT(gt))`` (DeepSN-Net's mix3)."""

    def __init__(self, fft_weight: float = 0.01, eps: float = 1e-3) -> None:
        super().__init__()
        self.fft_weight, self.eps = fft_weight, eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = pred - target
        return torch.sqrt(diff * diff + self.eps * self.eps).mean() + self.fft_weight * fft_l1(pred, target)


class L1Loss(nn.Module):
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(pred, target)


LOSSES = {"l1_fft": L1FFTLoss, "charbonnier_fft": CharbonnierFFTLoss, "l1": lambda fft_weight=0.0: L1Loss()}


def build_loss(name: str, fft_weight: float) -> nn.Module:
    """The loss ``name`` with its FFT weight (ignored by ``l1``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    return LOSSES[name](fft_weight=fft_weight)

"""The training loss of InterIR: L1 + 0.1 * L1 of the 2-D FFT (FSNet's recipe, paper Sec. 3.4)."""

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
        # FFT in float32 even under autocast: half-precision FFTs lose the high frequencies.
        fp = torch.view_as_real(torch.fft.fft2(pred.float(), dim=(-2, -1)))
        ft = torch.view_as_real(torch.fft.fft2(target.float(), dim=(-2, -1)))
        return spatial + self.fft_weight * F.l1_loss(fp, ft)

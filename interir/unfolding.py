"""The deep-unfolding frame shared by InterIR and DeepSN-Net (and the Table 4 ladder).

Both networks solve D = P1 * I * P2 + N (Eq. 3) on a pixel-unshuffled grid with the
same skeleton; they differ only in the modules plugged into it:

- ``op``: the learned operator E(.) used inside every update (EPBlock for InterIR,
  DeepSN-Net's Basic_block for the baseline), a factory ``op(channels) -> nn.Module``;
- ``image_update``: the image-estimate step (InterIR's RESM, Eq. 12; DeepSN-Net's
  subtraction form, Suppl. Eq. 28), ``forward(x, z, m, P, Q) -> x``;
- ``pq_update``: the degradation-matrix step (InterIR's DMUM, Eq. 13; DeepSN-Net's P/Q
  update), ``forward(x, z, P, Q) -> (P, Q)``;
- ``multiplier_update``: the Lagrange-multiplier step (InterIR's MUM, Eq. 14),
  ``forward(x, m) -> m``.

Shapes on a B x 3 x H x W input with unshuffle factor s and width C (h = H/s, w = W/s):
x, z, m: (B, C, h, w); P = P1: (B, C, h, h); Q = P2: (B, C, w, w). The operator acts
per sample and channel as H(x) = P x Q, its adjoint as H^T(y) = P^T y Q^T.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

OpFactory = Callable[[int], nn.Module]


def no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Disable autocast on ``device_type``; a no-op on devices without autocast (``meta``, used for MAC counts)."""
    if device_type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def _fp32(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.float() for t in ts)


def kron_apply(x: torch.Tensor, P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """H(x) = P x Q per sample and channel, always in float32 (also under autocast)."""
    with no_autocast(x.device.type):
        x32, P32, Q32 = _fp32(x, P, Q)
        return torch.matmul(torch.matmul(P32, x32), Q32).to(x.dtype)


def kron_adjoint(y: torch.Tensor, P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """H^T(y) = P^T y Q^T per sample and channel, in float32."""
    with no_autocast(y.device.type):
        y32, P32, Q32 = _fp32(y, P, Q)
        return torch.matmul(torch.matmul(P32.transpose(-1, -2), y32), Q32.transpose(-1, -2)).to(y.dtype)


def normalize_matrix(M: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L2-normalise each (sample, channel) matrix over all its entries, in float32 with eps."""
    with no_autocast(M.device.type):
        M32 = M.float()
        norm = M32.flatten(-2).norm(dim=-1).clamp_min(eps)[..., None, None]
        return M32 / norm


class InitModule(nn.Module):
    """Eq. 11: I^0 = D_s, Lambda^0 = Conv1x1(D_s) + D_s, P1^0 = nrm(D_s D_s^T), P2^0 = nrm(D_s^T D_s)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mult = nn.Conv2d(channels, channels, 1)

    def forward(self, z: torch.Tensor):
        with no_autocast(z.device.type):
            z32 = z.float()
            P = normalize_matrix(torch.matmul(z32, z32.transpose(-1, -2)))
            Q = normalize_matrix(torch.matmul(z32.transpose(-1, -2), z32))
        return z, self.mult(z) + z, P, Q


class UnfoldingStage(nn.Module):
    """One unfolded iteration (an IPBlock in InterIR): image, degradation matrices, multiplier."""

    def __init__(self, image_update: nn.Module, pq_update: nn.Module | None, multiplier_update: nn.Module | None):
        super().__init__()
        self.image_update = image_update
        self.pq_update = pq_update
        self.multiplier_update = multiplier_update

    def forward(self, x, z, m, P, Q):
        x = self.image_update(x, z, m, P, Q)
        if self.pq_update is not None:
            P, Q = self.pq_update(x, z, P, Q)
        if self.multiplier_update is not None:
            m = self.multiplier_update(x, m)
        return x, m, P, Q


class UnfoldingNet(nn.Module):
    """Pixel-unshuffle -> init (Eq. 11) -> ``depth`` stages -> projection -> global residual.

    As in DeepSN-Net, the last stage updates only the image estimate. ``make_*`` are
    factories ``(channels, op) -> module`` so that variants swap one piece at a time.
    """

    def __init__(
        self,
        width: int,
        depth: int,
        down: int,
        op: OpFactory,
        make_image_update: Callable[[int, OpFactory], nn.Module],
        make_pq_update: Callable[[int, OpFactory], nn.Module],
        make_multiplier_update: Callable[[int, OpFactory], nn.Module],
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.stride = down
        grid = in_channels * down * down
        self.down = nn.Sequential(nn.PixelUnshuffle(down), nn.Conv2d(grid, width, 3, padding=1, bias=False))
        self.init = InitModule(width)
        stages = [
            UnfoldingStage(
                make_image_update(width, op), make_pq_update(width, op), make_multiplier_update(width, op)
            )
            for _ in range(depth - 1)
        ]
        stages.append(UnfoldingStage(make_image_update(width, op), None, None))
        self.stages = nn.ModuleList(stages)
        proj = nn.Identity() if width == grid else nn.Conv2d(width, grid, 1)
        self.up = nn.Sequential(
            proj, nn.PixelShuffle(down), nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False)
        )

    def forward(self, inp: torch.Tensor, return_intermediates: bool = False) -> Any:
        h, w = inp.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        x_in = F.pad(inp, (0, pw, 0, ph), mode="reflect") if ph or pw else inp
        z = self.down(x_in)
        x, m, P, Q = self.init(z)
        iterates = []
        for stage in self.stages:
            x, m, P, Q = stage(x, z, m, P, Q)
            if return_intermediates:
                iterates.append((x_in + self.up(x))[..., :h, :w])
        out = (x_in + self.up(x))[..., :h, :w]
        if return_intermediates:
            return {"output": out, "iterates": iterates, "P": P, "Q": Q}
        return out

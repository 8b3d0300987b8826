"""Building blocks shared by InterIR and the baselines (NAFNet's LayerNorm2d, SimpleGate, NAFBlock).

Follows NAFNet (Chen et al., ECCV 2022): all convolutions have a bias, the two residual
scales (beta, gamma) start at zero so every block is the identity at initialisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

ConvFactory = Callable[[int], nn.Module]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension at every pixel (NAFNet's LayerNorm2d)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split channels in two halves and multiply them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class SimplifiedChannelAttention(nn.Module):
    """SCA: global average pool, 1x1 conv, channel-wise product."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv(F.adaptive_avg_pool2d(x, 1))


def depthwise3x3(channels: int) -> nn.Module:
    """The plain depthwise 3x3 convolution of a NAFBlock."""
    return nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=True)


class NAFBlock(nn.Module):
    """NAFBlock: LN, 1x1, depthwise 3x3, SimpleGate, SCA, 1x1 (+beta) then LN, 1x1, SG, 1x1 (+gamma).

    ``dw_conv`` builds the depthwise 3x3 convolution from its channel count; InterIR's
    EPBlock passes the explainable convolution here (Eqs. 15-20).
    """

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2, dw_conv: ConvFactory = depthwise3x3) -> None:
        super().__init__()
        dw = c * dw_expand
        ffn = c * ffn_expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = dw_conv(dw)
        self.sg = SimpleGate()
        self.sca = SimplifiedChannelAttention(dw // 2)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        # Zero-initialised residual scales: the block starts as the identity.
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.norm1(inp))
        x = self.sg(self.conv2(x))
        x = self.conv3(self.sca(x))
        y = inp + self.beta * x
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + self.gamma * x

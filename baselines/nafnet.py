"""NAFNet (Chen et al., ECCV 2022): the U-Net of NAFBlocks, the walking skeleton's first model.

Not in the paper's tables; kept as a well-understood reference point for the harness.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from interir.blocks import NAFBlock
from interir.registry import ModelCard, register_model


class NAFNet(nn.Module):
    """Encoder/decoder of NAFBlocks with stride-2 down, PixelShuffle up and a global residual."""

    def __init__(self, width: int = 16, enc_blocks=(1, 1), middle_blocks: int = 1, dec_blocks=(1, 1)) -> None:
        super().__init__()
        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.ending = nn.Conv2d(width, 3, 3, padding=1)
        self.encoders, self.downs, self.decoders, self.ups = (nn.ModuleList() for _ in range(4))
        c = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c) for _ in range(middle_blocks)])
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
        self.stride = 2 ** len(enc_blocks)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        x = F.pad(inp, (0, pw, 0, ph), mode="reflect") if ph or pw else inp
        feat = self.intro(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            feat = enc(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.middle(feat)
        for dec, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            feat = dec(up(feat) + skip)
        out = self.ending(feat) + x
        return out[..., :h, :w]


@register_model(
    ModelCard(
        name="nafnet",
        summary="NAFNet U-Net (reference model of the harness; not in the paper's tables)",
        stride=1,
        eval_batch=1,  # full-resolution U-Net: batching measured slower on the CPU
        deviations=("Smaller presets than NAFNet's SIDD config; paper preset is NAFNet-w32 (29.2 M).",),
    ),
    presets={
        "smoke": dict(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1)),
        "small": dict(width=16, enc_blocks=(1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1)),
        "paper": dict(width=32, enc_blocks=(2, 2, 4, 8), middle_blocks=12, dec_blocks=(2, 2, 2, 2)),
    },
)
def nafnet(**kwargs) -> NAFNet:
    return NAFNet(**kwargs)

"""FDTANet (Gao et al., Pattern Recognition 2025): the MDIR baseline of Table 1 and the Table 5 transplant.

Re-implementation of ``Tombs98/FDTANet`` ``FDTANet.py`` written for this project: a NAFNet-style
U-Net (width 32, encoder [2, 2, 4, 8], 12 middle blocks, decoder [2, 2, 2, 2]) whose blocks are

- :class:`FDGBlock` (frequency-domain gated block) = the spatial half of a NAFBlock (LN, 1x1,
  depthwise 3x3, SimpleGate, SCA, 1x1, zero-initialised beta) followed by :class:`FFFN`, an FFN with a
  learnable per-channel re-weighting of the spectrum (zero-initialised gamma);
- :class:`ATBlock` in the decoder: three FDGBlocks chained through three :class:`FDRBlock`
  (frequency-domain re-weighting) outputs, densely summed;
- :class:`FFB`, a local branch plus a Fourier unit (:class:`SpectralTransform`), before the output conv.

Shared pieces (LayerNorm2d, SimpleGate, SCA, the depthwise 3x3 factory) come from
:mod:`interir.blocks`. ``conv`` swaps every depthwise 3x3 for another factory, e.g. the
explainable conv (Table 5, ``fdtanet_xconv``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from interir.blocks import ConvFactory, LayerNorm2d, SimpleGate, SimplifiedChannelAttention, depthwise3x3
from interir.registry import ModelCard, register_model


def _dw_factory(conv: str | ConvFactory) -> ConvFactory:
    if callable(conv):
        return conv
    if conv == "plain":
        return depthwise3x3
    if conv == "xconv":
        from interir.xconv import explainable_dw3x3

        return explainable_dw3x3
    raise ValueError(f"conv must be 'plain', 'xconv' or a callable, got {conv!r}")


def spectral_reweight(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """irfft2(rfft2(x) * weight) with orthonormal FFTs; ``weight`` is (C, 1, 1), real."""
    size = x.shape[-2:]
    spec = torch.fft.rfft2(x.float(), norm="ortho") * weight.float()
    return torch.fft.irfft2(spec, s=size, norm="ortho").to(x.dtype)


class FFFN(nn.Module):
    """Frequency FFN: y = conv2(SG(conv1(LN(x)))); out = inp + gamma * (conv3(SG(irfft(w * rfft(y)))) + y)."""

    def __init__(self, channels: int, ffn_expand: int = 2) -> None:
        super().__init__()
        hidden = channels * ffn_expand
        self.norm = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.sg = SimpleGate()
        self.conv2 = nn.Conv2d(hidden // 2, channels, 1)
        self.spectrum = nn.Parameter(torch.ones(channels, 1, 1))
        self.conv3 = nn.Conv2d(channels // 2, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.sg(self.conv1(self.norm(inp))))
        out = self.conv3(self.sg(spectral_reweight(y, self.spectrum))) + y
        return inp + self.gamma * out


class FDGBlock(nn.Module):
    """Frequency-domain gated block: NAFBlock spatial half (+beta, zero init) then :class:`FFFN`."""

    def __init__(self, channels: int, dw_expand: int = 2, ffn_expand: int = 2, dw_conv: ConvFactory = depthwise3x3):
        super().__init__()
        dw = channels * dw_expand
        self.norm = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.conv2 = dw_conv(dw)
        self.sg = SimpleGate()
        self.sca = SimplifiedChannelAttention(dw // 2)
        self.conv3 = nn.Conv2d(dw // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.ffn = FFFN(channels, ffn_expand)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.sca(self.sg(self.conv2(self.conv1(self.norm(inp))))))
        return self.ffn(inp + self.beta * x)


class FDRBlock(nn.Module):
    """Frequency-domain re-weighting: conv(SG(irfft2(w * rfft2(x)))), c -> c/2 -> c."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.spectrum = nn.Parameter(torch.ones(channels, 1, 1))
        self.sg = SimpleGate()
        self.conv = nn.Conv2d(channels // 2, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.sg(spectral_reweight(x, self.spectrum)))


class ATBlock(nn.Module):
    """Decoder block: r1 = R1(B1(x)); r2 = R2(B2(x + r1)); r3 = R3(B3(x + r1 + r2)); out = x + r1 + r2 + r3."""

    def __init__(self, channels: int, dw_conv: ConvFactory = depthwise3x3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FDGBlock(channels, dw_conv=dw_conv) for _ in range(3))
        self.reweights = nn.ModuleList(FDRBlock(channels) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc = x
        for block, reweight in zip(self.blocks, self.reweights):
            acc = acc + reweight(block(acc))
        return acc


class FourierUnit(nn.Module):
    """rfft2 (ortho) -> real/imag as channels -> 1x1 (2c -> 4c) -> LN -> SG -> back to complex -> irfft2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 4 * channels, 1)
        self.norm = LayerNorm2d(4 * channels)
        self.sg = SimpleGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        spec = torch.fft.rfft2(x.float(), norm="ortho")
        # channel layout (c, re/im) interleaved, as in the official unit
        feat = torch.stack((spec.real, spec.imag), dim=2).reshape(b, 2 * c, h, -1).to(x.dtype)
        feat = self.sg(self.norm(self.conv(feat)))
        feat = feat.reshape(b, c, 2, h, -1).float()
        return torch.fft.irfft2(torch.complex(feat[:, :, 0], feat[:, :, 1]), s=(h, w), norm="ortho").to(x.dtype)


class SpectralTransform(nn.Module):
    """x' = SG(LN(1x1 c -> 2c)); out = 1x1(x' + FourierUnit(x')). No biases (official)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(channels, 2 * channels, 1, bias=False), LayerNorm2d(2 * channels))
        self.sg = SimpleGate()
        self.fu = FourierUnit(channels)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv1(x))
        return self.conv2(x + self.fu(x))


class FFB(nn.Module):
    """Fourier fusion block before the output conv: 1x1(cat(x + local(x), spectral(x))), no biases."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.local = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            LayerNorm2d(channels),
            SimpleGate(),
            nn.Conv2d(channels // 2, channels, 1, bias=False),
        )
        self.spectral = SpectralTransform(channels)
        self.fuse = nn.Conv2d(2 * channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat((x + self.local(x), self.spectral(x)), dim=1))


class FDTANet(nn.Module):
    """U-Net: intro 3x3 -> FDGBlock encoders (2x2 stride-2 down) -> FDGBlock middle -> ATBlock decoders
    (1x1 + PixelShuffle up, additive skips) -> FFB -> ending 3x3 -> global residual.

    Inputs are zero-padded to a multiple of ``2 ** len(enc_blocks)`` (as the official
    ``check_image_size``) and the output is cropped back (the official forward returns the padded size).
    """

    def __init__(
        self,
        width: int = 32,
        enc_blocks: Sequence[int] = (2, 2, 4, 8),
        middle_blocks: int = 12,
        dec_blocks: Sequence[int] = (2, 2, 2, 2),
        conv: str | ConvFactory = "plain",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError("enc_blocks and dec_blocks must have the same length")
        dw_conv = _dw_factory(conv)
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = (nn.ModuleList() for _ in range(4))
        c = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*(FDGBlock(c, dw_conv=dw_conv) for _ in range(n))))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*(FDGBlock(c, dw_conv=dw_conv) for _ in range(middle_blocks)))
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*(ATBlock(c, dw_conv=dw_conv) for _ in range(n))))
        self.fourier = FFB(width)
        self.ending = nn.Conv2d(width, in_channels, 3, padding=1)
        self.pad_to = 2 ** len(enc_blocks)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        x = F.pad(inp, (0, (-w) % self.pad_to, 0, (-h) % self.pad_to))
        feat = self.intro(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            feat = enc(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.middle(feat)
        for dec, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            feat = dec(up(feat) + skip)
        out = self.ending(self.fourier(feat)) + x
        return out[..., :h, :w]


# smoke and small keep the four levels (the 1/16 bottleneck holds most parameters at few positions) with one block
# per encoder/decoder level and the middle blocks as the size knob, so that the comparisons with InterIR keep their
# paper parameter and MAC ratios within 25 % (benchmarks/preset_ratios.py).
_PRESETS: dict[str, dict] = {
    "smoke": dict(width=6, enc_blocks=(1, 1, 1, 1), middle_blocks=8, dec_blocks=(1, 1, 1, 1)),
    "small": dict(width=12, enc_blocks=(1, 1, 1, 1), middle_blocks=7, dec_blocks=(1, 1, 1, 1)),
    "paper": dict(width=32, enc_blocks=(2, 2, 4, 8), middle_blocks=12, dec_blocks=(2, 2, 2, 2)),
}
_DEVIATIONS = (
    "Output is cropped to the input size (the official forward returns the zero-padded size).",
    "irfft2 gets the explicit output size, so odd sizes after padding are never an issue.",
    "LayerNorm2d is the harness's autograd version (same parameters and values as NAFNet's custom-backward one).",
)


NO_RECIPE = ("Tombs98/FDTANet publishes the model file only (no training code or configuration): with "
             "train.recipe: original it trains with the shared recipe")


@register_model(
    ModelCard(
        name="fdtanet",
        summary="FDTANet (Pattern Recognition 2025): NAFNet-style U-Net of FDG blocks, ATBlock decoder, Fourier unit",
        paper_rows=(("table1", "FDTANet"), ("table5", "FDTANet")),
        deviations=_DEVIATIONS,
        batch_independent=True,
        eval_batch=1,  # full-resolution U-Net: batching measured slower on the CPU
        stride=1,
        recipe_note=NO_RECIPE,
    ),
    presets=_PRESETS,
)
def fdtanet(**kwargs) -> FDTANet:
    return FDTANet(**kwargs)


@register_model(
    ModelCard(
        name="fdtanet_xconv",
        summary="FDTANet with InterIR's explainable conv in every depthwise 3x3 (Table 5)",
        paper_rows=(("table5", "FDTANet + explainable conv"),),
        deviations=_DEVIATIONS + ("Explainable conv (interir.xconv.explainable_dw3x3) replaces every depthwise 3x3.",),
        batch_independent=True,
        eval_batch=1,  # full-resolution U-Net: batching measured slower on the CPU
        stride=1,
        recipe_note=NO_RECIPE,
    ),
    presets=_PRESETS,
)
def fdtanet_xconv(**kwargs) -> FDTANet:
    kwargs.setdefault("conv", "xconv")
    return FDTANet(**kwargs)

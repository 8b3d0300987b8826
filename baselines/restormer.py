"""Restormer (Zamir et al., CVPR 2022): the transformer baseline of Table 1.

Re-implementation written for this project from the paper, checked against the official
``swz30/Restormer`` ``basicsr/models/archs/restormer_arch.py`` (Academic Public License; read, not
copied). A 4-level U-Net whose every stage is a stack of :class:`TransformerBlock`:

- :class:`MDTA` (multi-Dconv head transposed attention, Sec. 3.1, Fig. 2a, Eq. 1): Q, K, V from a
  1x1 conv and a depthwise 3x3; attention between *channels* (a C/h x C/h map per head, linear in the
  number of pixels), L2-normalised Q and K, a learnable temperature per head;
- :class:`GDFN` (gated-Dconv feed-forward network, Sec. 3.2, Fig. 2b, Eq. 2): 1x1 conv to two
  branches of ``int(C * 2.66)`` channels, depthwise 3x3, ``GELU(x1) * x2``, 1x1 conv back;
- pre-norm residuals, LayerNorm over the channels at every pixel (``WithBias`` or ``BiasFree``);
- :class:`Downsample` (3x3 conv C -> C/2, pixel-unshuffle: 2C), :class:`Upsample` (3x3 conv C -> 2C,
  pixel-shuffle: C/2), skip connections by concatenation and a 1x1 reduction (none at level 1, whose
  decoder and the refinement stage work at 2C), 3x3 output conv and a global residual (Fig. 2).

:class:`PromptIR <baselines.promptir.PromptIR>` reuses these blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from interir.registry import ModelCard, Recipe, register_model


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every pixel (eps 1e-5, biased variance), as Restormer's ``LayerNorm``.

    ``with_bias=False`` is Restormer's ``BiasFree`` variant: ``x / sqrt(var + eps) * w`` (no centring).
    """

    def __init__(self, channels: int, with_bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:  # F.layer_norm over the last dim: the fused kernel, channels moved last
            y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention (Eq. 1): ``x -> W_p V softmax(K^T Q * t)`` per head.

    Q, K, V = depthwise3x3(1x1(x)); Q and K are L2-normalised along the pixels; the attention map is
    (C/heads) x (C/heads) per head, scaled by a learnable temperature ``t`` (one per head, init 1).
    """

    def __init__(self, channels: int, heads: int, bias: bool = False) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels={channels} not divisible by heads={heads}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=bias)
        self.qkv_dw = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels, bias=bias)
        self.proj = nn.Conv2d(channels, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in self.qkv_dw(self.qkv(x)).chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.proj((attn @ v).reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network (Eq. 2): ``1x1(GELU(x1) * x2)``, ``[x1, x2] = dw3x3(1x1(x))``."""

    def __init__(self, channels: int, expansion: float = 2.66, bias: bool = False) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.proj_in = nn.Conv2d(channels, 2 * hidden, 1, bias=bias)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.proj_out = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dw(self.proj_in(x)).chunk(2, dim=1)
        return self.proj_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Restormer block: ``x + MDTA(LN(x))``, then ``x + GDFN(LN(x))``."""

    def __init__(self, channels: int, heads: int, expansion: float = 2.66, bias: bool = False,
                 norm_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, norm_bias)
        self.attn = MDTA(channels, heads, bias)
        self.norm2 = ChannelLayerNorm(channels, norm_bias)
        self.ffn = GDFN(channels, expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def transformer_stage(channels: int, heads: int, n: int, expansion: float, bias: bool,
                      norm_bias: bool) -> nn.Sequential:
    """``n`` :class:`TransformerBlock` s in a row."""
    return nn.Sequential(*(TransformerBlock(channels, heads, expansion, bias, norm_bias) for _ in range(n)))


class Downsample(nn.Sequential):
    """3x3 conv C -> C/2 (no bias), pixel-unshuffle(2): C/2 x 4 = 2C channels at half resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))


class Upsample(nn.Sequential):
    """3x3 conv C -> 2C (no bias), pixel-shuffle(2): C/2 channels at double resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Conv2d(channels, 2 * channels, 3, padding=1, bias=False), nn.PixelShuffle(2))


def _norm_bias(layer_norm: str) -> bool:
    if layer_norm not in ("with_bias", "bias_free"):
        raise ValueError(f"layer_norm must be 'with_bias' or 'bias_free', got {layer_norm!r}")
    return layer_norm == "with_bias"


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad bottom/right to a multiple of ``multiple`` (replicate when the input is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


class Restormer(nn.Module):
    """The Restormer U-Net with ``len(num_blocks)`` levels (4 in the paper), channels ``dim * 2**level``.

    embed (3x3) -> encoder stages (Downsample between) -> latent stage -> decoder stages (Upsample, concat
    with the encoder output, 1x1 reduction except at level 1) -> refinement stage (2*dim) -> 3x3 conv
    -> + input. Inputs are reflect-padded to a multiple of ``2 ** (levels - 1)`` and cropped back
    (the official test scripts pad the same way outside the model).
    """

    def __init__(
        self,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        layer_norm: str = "with_bias",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        levels = len(num_blocks)
        if levels < 2 or len(heads) != levels:
            raise ValueError("num_blocks and heads need the same length >= 2")
        nb = _norm_bias(layer_norm)
        chans = [dim * 2**i for i in range(levels)]
        self.embed = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)
        self.encoders = nn.ModuleList(
            transformer_stage(chans[i], heads[i], num_blocks[i], ffn_expansion_factor, bias, nb)
            for i in range(levels - 1)
        )
        self.downs = nn.ModuleList(Downsample(chans[i]) for i in range(levels - 1))
        self.latent = transformer_stage(chans[-1], heads[-1], num_blocks[-1], ffn_expansion_factor, bias, nb)
        self.ups, self.reduces, self.decoders = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(levels - 1)):  # deepest decoder first
            self.ups.append(Upsample(chans[i + 1]))
            width = chans[i] if i > 0 else 2 * chans[0]
            self.reduces.append(nn.Conv2d(2 * chans[i], chans[i], 1, bias=bias) if i > 0 else nn.Identity())
            self.decoders.append(transformer_stage(width, heads[i], num_blocks[i], ffn_expansion_factor, bias, nb))
        self.refinement = transformer_stage(2 * dim, heads[0], num_refinement_blocks, ffn_expansion_factor, bias, nb)
        self.output = nn.Conv2d(2 * dim, in_channels, 3, padding=1, bias=bias)
        self.pad_to = 2 ** (levels - 1)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        x = pad_to_multiple(inp, self.pad_to)
        feat = self.embed(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            feat = enc(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.latent(feat)
        for up, reduce, dec, skip in zip(self.ups, self.reduces, self.decoders, reversed(skips)):
            feat = dec(reduce(torch.cat((up(feat), skip), dim=1)))
        out = self.output(self.refinement(feat)) + x
        return out[..., :h, :w]


# The official training recipe (swz30/Restormer @ df766d5; the paper's Table 1 rows are the InterIR authors'
# all-in-one retraining, whose settings the InterIR paper does not give).
RECIPE = Recipe(
    source="swz30/Restormer@df766d5 Deraining/Options/Deraining_Restormer.yml (l.74-102); "
           "basicsr/models/image_restoration_model.py (l.166-167)",
    optimizer="adamw", lr=3e-4, lr_min=1e-6, betas=(0.9, 0.999), weight_decay=1e-4, schedule="cosine", loss="l1",
    grad_clip=0.01, batch=64, patch=256, iters=300_000,
    notes="official schedule: 3e-4 fixed for 92k iterations, then cosine to 1e-6 over 208k (here: cosine over the "
          "whole budget); batch 8 per GPU x 8 GPUs; progressive patches 128-384 (here: one patch size, 256 at the "
          "paper profile); no warm-up; L1 loss; clip_grad_norm 0.01",
)

# smoke/small: width and depth scaled together (dim 48 -> 12 / 18, depths x 2/8 / 3/8), so that the parameter and
# MAC ratios to InterIR stay within 25 % of the paper presets' (benchmarks/preset_ratios.py --search restormer).
_PRESETS: dict[str, dict] = {
    "smoke": dict(dim=12, num_blocks=(1, 2, 2, 2), num_refinement_blocks=1, heads=(1, 2, 4, 8)),
    "small": dict(dim=18, num_blocks=(2, 2, 2, 3), num_refinement_blocks=2, heads=(1, 2, 4, 8)),
    "paper": dict(dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8),
                  ffn_expansion_factor=2.66, bias=False, layer_norm="with_bias"),
}


@register_model(
    ModelCard(
        name="restormer",
        paper_rows=(("table1", "Restormer"),),
        recipe=RECIPE,
        summary="Restormer (CVPR 2022): 4-level U-Net of MDTA + GDFN transformer blocks, 26.1 M params; own "
                "re-implementation of swz30/Restormer (official code: Academic Public License)",
        deviations=(
            "No dual-pixel (defocus) branch: dual_pixel_task=False is the only configuration built.",
            "Inputs are reflect-padded to a multiple of 8 inside the model and cropped back (the official forward "
            "needs multiples of 8; its test scripts pad outside the model the same way).",
            "Levels, depths, heads and width are parameters (the official class is fixed at 4 levels); "
            "smoke/small presets are smaller.",
        ),
        batch_independent=True,
        stride=8,
        eval_batch=1,  # full-resolution U-Net, like NAFNet and FDTANet (not measured)
    ),
    presets=_PRESETS,
)
def restormer(**kwargs) -> Restormer:
    return Restormer(**kwargs)

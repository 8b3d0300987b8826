"""PromptIR (Potlapalli et al., NeurIPS 2023): the prompt-based all-in-one baseline of Tables 1 and 8.

Re-implementation written for this project from the paper, checked against the official
``va1shn9v/PromptIR`` ``net/model.py`` (Academic Public License; read, not copied), configured as its
``train.py`` builds it: ``PromptIR(decoder=True)``, i.e. prompt blocks in the decoder.

The backbone is Restormer's 4-level U-Net (:mod:`baselines.restormer`: MDTA + GDFN transformer blocks,
pixel-(un)shuffle resizing). At each decoder level but the first, a prompt block (Fig. 2) conditions the
features on learned degradation prompts:

- :class:`PromptGeneration` (PGM): ``N`` learned prompt components ``P_c`` (C_p x S x S each) mixed with
  weights ``softmax(Linear(GAP(F)))`` predicted from the features, resized to the feature size
  (bilinear) and passed through a 3x3 conv;
- :class:`PromptBlock` = PGM + PIM (prompt interaction): ``1x1(TransformerBlock(cat(F, P)))``.

The prompt block at the bottleneck reduces the latent to half its width before the upsampling (as the
official model does), so the first skip concatenation is narrower than Restormer's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.restormer import Downsample, TransformerBlock, Upsample, _norm_bias, pad_to_multiple, transformer_stage
from interir.registry import ModelCard, Recipe, register_model


class PromptGeneration(nn.Module):
    """PGM: ``conv3x3(resize(sum_c w_c P_c))``, ``w = softmax(Linear(GAP(F)))`` over ``prompt_len`` components.

    The components start uniform in [0, 1) (``torch.rand``, as the official code).
    """

    def __init__(self, feat_channels: int, prompt_dim: int, prompt_len: int, prompt_size: int) -> None:
        super().__init__()
        self.components = nn.Parameter(torch.rand(prompt_len, prompt_dim, prompt_size, prompt_size))
        self.weights = nn.Linear(feat_channels, prompt_len)
        self.conv = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        w = F.softmax(self.weights(feat.mean(dim=(-2, -1))), dim=1)  # (B, N)
        n, c, s, _ = self.components.shape
        prompt = (w @ self.components.reshape(n, -1)).reshape(-1, c, s, s)
        prompt = F.interpolate(prompt, size=feat.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(prompt)


class PromptBlock(nn.Module):
    """PGM then PIM: ``1x1(TransformerBlock(cat(F, PGM(F))))``, C + C_p -> ``out_channels``."""

    def __init__(self, channels: int, prompt_dim: int, prompt_len: int, prompt_size: int, out_channels: int,
                 heads: int, expansion: float, bias: bool, norm_bias: bool) -> None:
        super().__init__()
        self.gen = PromptGeneration(channels, prompt_dim, prompt_len, prompt_size)
        self.block = TransformerBlock(channels + prompt_dim, heads, expansion, bias, norm_bias)
        self.reduce = nn.Conv2d(channels + prompt_dim, out_channels, 1, bias=bias)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.block(torch.cat((feat, self.gen(feat)), dim=1)))


class PromptIR(nn.Module):
    """Restormer U-Net with a :class:`PromptBlock` after the latent and after every decoder level but level 1.

    ``prompt_dims``/``prompt_sizes`` are per level, shallowest first (levels 2, 3, ..., bottleneck);
    all prompt blocks use ``prompt_heads`` attention heads (the official model uses 4 everywhere).
    The bottleneck's prompt block outputs half the latent width; the others keep the width. Inputs are
    reflect-padded to a multiple of ``2 ** (levels - 1)`` and cropped back.
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
        prompt_dims: Sequence[int] = (64, 128, 320),
        prompt_sizes: Sequence[int] = (64, 32, 16),
        prompt_len: int = 5,
        prompt_heads: int = 4,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        levels = len(num_blocks)
        if levels < 3 or len(heads) != levels or len(prompt_dims) != levels - 1 or len(prompt_sizes) != levels - 1:
            raise ValueError("PromptIR needs >= 3 levels, one head count per level and one prompt per level but the "
                             "first")
        nb, ex = _norm_bias(layer_norm), ffn_expansion_factor
        chans = [dim * 2**i for i in range(levels)]
        self.embed = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)
        self.encoders = nn.ModuleList(
            transformer_stage(chans[i], heads[i], num_blocks[i], ex, bias, nb) for i in range(levels - 1)
        )
        self.downs = nn.ModuleList(Downsample(chans[i]) for i in range(levels - 1))
        self.latent = transformer_stage(chans[-1], heads[-1], num_blocks[-1], ex, bias, nb)

        def prompt(level: int, out: int) -> PromptBlock:
            return PromptBlock(chans[level], prompt_dims[level - 1], prompt_len, prompt_sizes[level - 1], out,
                               prompt_heads, ex, bias, nb)

        # deepest first: prompts[0] after the latent, prompts[j] after decoders[j - 1]
        self.prompts = nn.ModuleList([prompt(levels - 1, chans[-1] // 2)])
        self.ups, self.reduces, self.decoders = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        up_in = chans[-1] // 2
        for i in reversed(range(levels - 1)):
            self.ups.append(Upsample(up_in))
            cat = up_in // 2 + chans[i]
            width = chans[i] if i > 0 else cat
            self.reduces.append(nn.Conv2d(cat, chans[i], 1, bias=bias) if i > 0 else nn.Identity())
            self.decoders.append(transformer_stage(width, heads[i], num_blocks[i], ex, bias, nb))
            if i > 0:
                self.prompts.append(prompt(i, chans[i]))
            up_in = chans[i]
        self.refinement = transformer_stage(2 * dim, heads[0], num_refinement_blocks, ex, bias, nb)
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
        feat = self.prompts[0](self.latent(feat))
        for j, (up, reduce, dec, skip) in enumerate(zip(self.ups, self.reduces, self.decoders, reversed(skips))):
            feat = dec(reduce(torch.cat((up(feat), skip), dim=1)))
            if j + 1 < len(self.prompts):
                feat = self.prompts[j + 1](feat)
        out = self.output(self.refinement(feat)) + x
        return out[..., :h, :w]


# The official training recipe (va1shn9v/PromptIR @ 106159a).
RECIPE = Recipe(
    source="va1shn9v/PromptIR@106159a train.py (l.24-46), options.py (l.8-30), utils/schedulers.py (l.239-330)",
    optimizer="adamw", lr=2e-4, lr_min=0.0, betas=(0.9, 0.999), weight_decay=0.01, schedule="cosine", loss="l1",
    warmup_fraction=0.1, batch=32, patch=128,
    notes="LinearWarmupCosineAnnealingLR(warmup 15, max 150 epochs), stepped per epoch, eta_min 0; training stops at "
          "epoch 120, so the official cosine never reaches its end (here: warm-up 10%, cosine over the budget); "
          "AdamW with torch's default weight decay 0.01; 8 per GPU x 4 GPUs; patch 128; L1 loss",
)

# smoke/small: width and depth scaled together (dim 48 -> 10 / 16, depths x 2/8 / 3/8), prompt widths with the width
# (64/128/320 x dim/48, multiples of 4), prompt sizes (64/32/16) by about the same factor, so that the parameter and
# MAC ratios to InterIR stay within 25 % of the paper presets' (benchmarks/preset_ratios.py --search promptir).
_PRESETS: dict[str, dict] = {
    "smoke": dict(dim=10, num_blocks=(1, 2, 2, 2), num_refinement_blocks=1, heads=(1, 2, 4, 8),
                  prompt_dims=(12, 28, 68), prompt_sizes=(16, 8, 4), prompt_len=5, prompt_heads=4),
    "small": dict(dim=16, num_blocks=(2, 2, 2, 3), num_refinement_blocks=2, heads=(1, 2, 4, 8),
                  prompt_dims=(20, 44, 108), prompt_sizes=(24, 12, 6), prompt_len=5, prompt_heads=4),
    "paper": dict(dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8),
                  ffn_expansion_factor=2.66, bias=False, layer_norm="with_bias",
                  prompt_dims=(64, 128, 320), prompt_sizes=(64, 32, 16), prompt_len=5, prompt_heads=4),
}


@register_model(
    ModelCard(
        name="promptir",
        paper_rows=(("table1", "PromptIR"), ("table8", "PromptIR")),
        recipe=RECIPE,
        summary="PromptIR (NeurIPS 2023): Restormer U-Net with prompt blocks (PGM + PIM) in the decoder, 35.4 M "
                "params; own re-implementation of va1shn9v/PromptIR (official code: Academic Public License)",
        deviations=(
            "The official __init__ also builds six 1x1 convs its forward never uses (chnl_reduce1-3, "
            "reduce_noise_channel_1-3: 215,296 parameters, counted in its 35.59 M); they are not built here "
            "(35.38 M, -0.60 %).",
            "Prompt components are mixed by one (B, N) x (N, C*S*S) matmul (counted as MACs: 2.4 M at the paper "
            "preset) instead of a broadcast product and sum over a (B, N, C, S, S) tensor; same values.",
            "Inputs are reflect-padded to a multiple of 8 inside the model and cropped back (the official forward "
            "needs multiples of 8; its test datasets crop images to multiples of 16 instead, "
            "utils/dataset_utils.py l.204, l.289).",
            "Levels, depths, prompt sizes and widths are parameters (the official class hard-codes the prompt "
            "widths 64/128/320 and sizes 64/32/16); smoke/small presets are smaller.",
        ),
        batch_independent=True,
        stride=8,
        eval_batch=1,  # full-resolution U-Net, like NAFNet and FDTANet (not measured)
    ),
    presets=_PRESETS,
)
def promptir(**kwargs) -> PromptIR:
    return PromptIR(**kwargs)

"""VLU-Net (Zeng et al., CVPR 2025), SIZING ONLY: params, MACs and CPU latency of the Table 1/8 system.

Not trainable by the pipeline (its card's ``trainable=False``): VLU-Net's degradation vector comes from a CLIP ViT-B/32
image encoder fine-tuned on degraded image-text pairs (``pretrained_ckpt/clip_tuned.pth`` on top of open_clip's
``laion2b_s34b_b79k`` weights), which cannot be downloaded here. The architecture of both parts is fully given
by the official ``xianggkl/VLU-Net`` (``net/Final.py``, ``net/clip.py``, ``open_clip/model_configs/ViT-B-32.json``,
``train.py``; read, not copied), so this module builds it with random weights: sizes and speed are those of the
real system, its outputs mean nothing.

- :class:`VLUNet`, the restorer: a Restormer-shaped U-Net (:mod:`baselines.restormer` blocks) in which every stage
  is a deep-unfolding step :class:`DUNStage` = a gradient step (:class:`GDM`) then a transformer "denoiser" (the
  proximal step). The gradient step ``x <- x - r * Phi^T(Phi(x, prompt) - y)`` uses a cross-attention ``Phi``
  whose keys come from a degradation prompt (softmax(Linear(v)) mixing ``de_dim`` learned prompt components,
  resized bilinearly) and an MDTA ``Phi^T``; ``y`` is a second embedding of the input carried along its own
  down/up path.
- The degradation vector ``v``: CLIP ViT-B/32 image tower (:mod:`baselines.clip_towers`) on the input resized
  to 224x224, then the 3-layer adapter (Linear-LN-GELU x2, Linear-LN) of ``net/clip.py``, frozen as officially.

Paper preset = the official configuration (``VLUNet(de_dim=7)``, Restormer widths, ``train.py`` l.38). As in the
official forward, the image path reuses ``down1_2`` and never runs ``down1_2_i`` (its parameters still count).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.clip_towers import VISION, VisionTower, clip_preprocess, freeze
from baselines.restormer import MDTA, Downsample, Upsample, pad_to_multiple, transformer_stage
from interir.registry import ModelCard, register_model

# Not trainable by the pipeline: a sizing model with random weights (see the module docstring).


class CrossMDTA(nn.Module):
    """MDTA with keys from a prompt: Q, V = dw3x3(1x1(x)); K = dw3x3(1x1(prompt)); channel attention per head."""

    def __init__(self, channels: int, prompt_channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qv = nn.Conv2d(channels, 2 * channels, 1, bias=False)
        self.qv_dw = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels, bias=False)
        self.k = nn.Conv2d(prompt_channels, channels, 1, bias=False)
        self.k_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.proj = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in self.qv_dw(self.qv(x)).chunk(2, dim=1))
        k = self.k_dw(self.k(prompt)).reshape(b, self.heads, c // self.heads, h * w)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.proj((attn @ v).reshape(b, c, h, w))


class GDM(nn.Module):
    """Gradient-descent module: ``x - r * Phi^T(Phi(x, P(v)) - y)``, ``P(v) = resize(sum_c softmax(Linear(v))_c P_c)``.

    ``de_dim`` prompt components of ``(dim // 10) * stage`` channels and ``prompt_size // stage`` pixels (official:
    96; uniform init);
    ``Phi``: :class:`CrossMDTA` (2 heads), ``Phi^T``: :class:`~baselines.restormer.MDTA` (2 heads); ``r`` init 1.
    """

    def __init__(self, de_dim: int, channels: int, stage: int, vector_dim: int = 512, prompt_size: int = 96) -> None:
        super().__init__()
        prompt_channels, size = channels // 10 * stage, prompt_size // stage
        self.phi = CrossMDTA(channels, prompt_channels, heads=2)
        self.phi_t = MDTA(channels, heads=2)
        self.r = nn.Parameter(torch.ones(1))
        self.weights = nn.Linear(vector_dim, de_dim)
        self.components = nn.Parameter(torch.rand(de_dim, prompt_channels, size, size))

    def forward(self, x: torch.Tensor, y: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        w = F.softmax(self.weights(vector), dim=1)
        n, c, s, _ = self.components.shape
        prompt = (w @ self.components.reshape(n, -1)).reshape(-1, c, s, s)
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x - self.r * self.phi_t(self.phi(x, prompt) - y)


class DUNStage(nn.Module):
    """One unfolding step: :class:`GDM` (gradient step) then ``n`` Restormer blocks (proximal step)."""

    def __init__(self, de_dim: int, stage: int, n: int, channels: int, heads: int, expansion: float,
                 vector_dim: int = 512, prompt_size: int = 96) -> None:
        super().__init__()
        self.gradient = GDM(de_dim, channels, stage, vector_dim, prompt_size)
        self.denoiser = transformer_stage(channels, heads, n, expansion, bias=False, norm_bias=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return self.denoiser(self.gradient(x, y, vector))


class VLUNet(nn.Module):
    """The restorer: a 4-level U-Net of :class:`DUNStage` s with a parallel image path ``y`` (own embed, down,
    up and reduce convs; passed through the stages unchanged). ``forward(x, vector)``."""

    def __init__(self, de_dim: int = 7, dim: int = 48, num_blocks: Sequence[int] = (4, 6, 6, 8),
                 num_refinement_blocks: int = 4, heads: Sequence[int] = (1, 2, 4, 8),
                 ffn_expansion_factor: float = 2.66, vector_dim: int = 512, prompt_size: int = 96) -> None:
        super().__init__()
        ex, c, vd = ffn_expansion_factor, [dim, 2 * dim, 4 * dim, 8 * dim], (vector_dim, prompt_size)
        self.embed, self.embed_y = (nn.Conv2d(3, dim, 3, padding=1, bias=False) for _ in range(2))
        self.encoders = nn.ModuleList(DUNStage(de_dim, i + 1, num_blocks[i], c[i], heads[i], ex, *vd)
                                      for i in range(3))
        self.latent = DUNStage(de_dim, 4, num_blocks[3], c[3], heads[3], ex, *vd)
        self.downs, self.downs_y = (nn.ModuleList(Downsample(c[i]) for i in range(3)) for _ in range(2))
        self.ups, self.ups_y = (nn.ModuleList(Upsample(c[i + 1]) for i in (2, 1, 0)) for _ in range(2))
        self.reduces, self.reduces_y = (nn.ModuleList(nn.Conv2d(2 * c[i], c[i], 1, bias=False) for i in (2, 1))
                                        for _ in range(2))
        self.decoders = nn.ModuleList([DUNStage(de_dim, 3, num_blocks[2], c[2], heads[2], ex, *vd),
                                       DUNStage(de_dim, 2, num_blocks[1], c[1], heads[1], ex, *vd),
                                       DUNStage(de_dim, 1, num_blocks[0], c[1], heads[0], ex, *vd)])
        self.refinement = DUNStage(de_dim, 1, num_refinement_blocks, c[1], heads[0], ex, *vd)
        self.output = nn.Conv2d(c[1], 3, 3, padding=1, bias=False)

    def forward(self, inp: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        x, y = self.embed(inp), self.embed_y(inp)
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x, y, vector)
            skips.append((x, y))
            # as the official forward: level 1 -> 2 downsamples the image path with the feature path's conv
            x, y = self.downs[i](x), (self.downs[i] if i == 0 else self.downs_y[i])(y)
        x = self.latent(x, y, vector)
        for j, dec in enumerate(self.decoders):
            (sx, sy), x, y = skips[2 - j], self.ups[j](x), self.ups_y[j](y)
            x, y = torch.cat((x, sx), dim=1), torch.cat((y, sy), dim=1)
            if j < 2:
                x, y = self.reduces[j](x), self.reduces_y[j](y)
            x = dec(x, y, vector)
        return self.output(self.refinement(x, y, vector)) + inp


class ClipAdapter(nn.Sequential):
    """net/clip.py's adapter on the CLIP image embedding: (Linear, LayerNorm, GELU) x 2, Linear, LayerNorm."""

    def __init__(self, dim: int = 512) -> None:
        super().__init__(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, dim), nn.LayerNorm(dim),
                         nn.GELU(), nn.Linear(dim, dim), nn.LayerNorm(dim))


class VLUNetSystem(nn.Module):
    """Test-time VLU-Net: frozen CLIP image tower + adapter -> degradation vector -> :class:`VLUNet`.

    ``clip``: a :data:`baselines.clip_towers.VISION` name; ``None`` sizes the restorer alone (Table 8's 35 M
    convention) with a zero vector. Inputs are
    reflect-padded to a multiple of 8 and cropped back.
    """

    # the official image path never runs downs_y[0] (down1_2_i), whose parameters still exist
    ddp_find_unused_parameters = True

    def __init__(self, de_dim: int = 7, dim: int = 48, num_blocks: Sequence[int] = (4, 6, 6, 8),
                 num_refinement_blocks: int = 4, heads: Sequence[int] = (1, 2, 4, 8),
                 ffn_expansion_factor: float = 2.66, prompt_size: int = 96, clip: str | None = "vit_b_32") -> None:
        super().__init__()
        self.vector_dim = VISION[clip]["embed_dim"] if clip is not None else 512
        self.restorer = VLUNet(de_dim, dim, num_blocks, num_refinement_blocks, heads, ffn_expansion_factor,
                               self.vector_dim, prompt_size)
        self.clip = freeze(VisionTower(**VISION[clip])) if clip is not None else None
        self.adapter = freeze(ClipAdapter(self.vector_dim)) if clip is not None else None

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        x = pad_to_multiple(inp, 8)
        if self.clip is None:
            vector = x.new_zeros(x.shape[0], self.vector_dim)
        else:
            with torch.no_grad():  # the official degradation model is frozen
                vector = self.adapter(self.clip(clip_preprocess(inp, self.clip.image_size, mode="bicubic")))
        return self.restorer(x, vector)[..., :h, :w]


_PRESETS: dict[str, dict] = {
    # smoke/small exist for the registry and the generic tests only; sizing uses the paper preset
    "smoke": dict(de_dim=7, dim=10, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, prompt_size=24, clip="tiny"),
    "small": dict(de_dim=7, dim=20, num_blocks=(1, 1, 1, 2), num_refinement_blocks=1, prompt_size=24, clip="tiny"),
    "paper": dict(de_dim=7, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8),
                  ffn_expansion_factor=2.66, prompt_size=96, clip="vit_b_32"),
}


@register_model(
    ModelCard(
        name="vlunet_sizing",
        trainable=False,
        paper_rows=(("table8", "VLU-Net"),),
        summary="SIZING ONLY, not trainable: VLU-Net (CVPR 2025) = CLIP ViT-B/32 + adapter (frozen, "
                "random weights here: the fine-tuned CLIP cannot be downloaded) + 35.4 M deep-unfolding restorer; "
                "own re-implementation of xianggkl/VLU-Net for params, MACs and CPU latency",
        deviations=(
            "Random weights everywhere, including the CLIP image tower and adapter (officially pretrained and "
            "fine-tuned, frozen): only sizes and speed are meaningful.",
            "The CLIP input is the model input resized to 224x224 (bicubic) inside the model; officially the data "
            "loader resizes the shorter side to 224 and centre-crops.",
            "Parameters include the CLIP ViT-B/32 image tower (87.85 M) and adapter (0.79 M); Table 8's 35 M is "
            "the restorer alone (clip=None).",
            "Inputs are reflect-padded to a multiple of 8 inside the model and cropped back.",
            "smoke/small presets are arbitrary small versions for the generic tests (tiny CLIP-like tower).",
        ),
        batch_independent=True,
        stride=8,
        eval_batch=1,
    ),
    presets=_PRESETS,
)
def vlunet_sizing(**kwargs) -> VLUNetSystem:
    return VLUNetSystem(**kwargs)

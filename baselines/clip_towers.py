"""CLIP image and text towers (Radford et al., ICML 2021), architecture only, for the sizing-only models.

VLU-Net and Perceive-IR condition their restorers on a frozen, pretrained CLIP ViT-B/32. Its weights cannot be
downloaded here, and a sizing model needs none: this module builds the same architecture with random weights,
so parameter counts, MACs and CPU latency are those of the real thing. The hyper-parameters are the published
ViT-B/32 ones (OpenAI ``clip.load("ViT-B/32")``; the same in open_clip's ``model_configs/ViT-B-32.json``, which
VLU-Net's repository ships): image 224x224, patch 32, width 768, 12 layers, 12 heads, MLP 4x; text context 77,
vocabulary 49,408, width 512, 8 heads, 12 layers, causal mask; joint embedding 512. Pre-norm residual attention
blocks; OpenAI's QuickGELU (open_clip's laion2b ViT-B-32 uses GELU: the same cost). Not a re-implementation
to load CLIP checkpoints into (no name compatibility is attempted).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Normalisation of CLIP's image preprocessing (OpenAI CLIP, also used by both official repositories).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a joint QKV projection (as ``nn.MultiheadAttention``, same parameters).

    Written out with matmuls rather than ``nn.MultiheadAttention``, whose eval-mode fast path
    (``aten._native_multi_head_attention``) no MAC counter sees: counts would depend on the device and mode.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.in_proj(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5
        if mask is not None:
            attn = attn + mask
        return self.out_proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c))


class ResidualAttentionBlock(nn.Module):
    """``x + attn(LN(x))``, then ``x + MLP(LN(x))`` (MLP: width -> 4 width -> width, QuickGELU)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), QuickGELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class VisionTower(nn.Module):
    """ViT: patch conv (no bias) -> [class token] + positions -> LN -> blocks -> LN(class token) @ proj."""

    def __init__(self, image_size: int = 224, patch: int = 32, width: int = 768, layers: int = 12, heads: int = 12,
                 embed_dim: int = 512) -> None:
        super().__init__()
        self.image_size = image_size
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (B, patches, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat((cls, x), dim=1) + self.positional_embedding)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x[:, 0]) @ self.proj


class TextTower(nn.Module):
    """Token + position embeddings -> causal blocks -> LN -> features at the end-of-text token @ projection."""

    def __init__(self, context: int = 77, vocab: int = 49408, width: int = 512, layers: int = 12, heads: int = 8,
                 embed_dim: int = 512) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(context, width))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(width**-0.5 * torch.randn(width, embed_dim))
        self.register_buffer("causal_mask", torch.full((context, context), float("-inf")).triu(1), persistent=False)

    def forward(self, tokens: torch.Tensor, eot: int) -> torch.Tensor:
        """``tokens`` (B, context) int64; ``eot``: position of the end-of-text token (the same for the batch)."""
        x = self.token_embedding(tokens) + self.positional_embedding
        for block in self.blocks:
            x = block(x, self.causal_mask)
        return self.ln_final(x[:, eot]) @ self.text_projection


# Tower configurations by name (presets hold the name). "vit_b_32": the published CLIP ViT-B/32; "tiny": a small
# stand-in with the same interfaces for the smoke/small presets of the sizing models (generic tests only).
VISION = {
    "vit_b_32": dict(image_size=224, patch=32, width=768, layers=12, heads=12, embed_dim=512),
    "tiny": dict(image_size=64, patch=32, width=32, layers=1, heads=2, embed_dim=32),
}
TEXT = {
    "vit_b_32": dict(context=77, vocab=49408, width=512, layers=12, heads=8, embed_dim=512),
    "tiny": dict(context=16, vocab=64, width=32, layers=1, heads=2, embed_dim=32),
}


def clip_preprocess(img: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize an image batch in [0, 1] to ``size`` x ``size`` and apply CLIP's normalisation."""
    x = F.interpolate(img, size=(size, size), mode=mode, align_corners=False)
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def freeze(module: nn.Module) -> nn.Module:
    """``requires_grad=False`` on every parameter (the official models keep CLIP frozen)."""
    for p in module.parameters():
        p.requires_grad = False
    return module

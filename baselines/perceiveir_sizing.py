"""Perceive-IR (Zhang et al., TIP 2025), SIZING ONLY: params, MACs and CPU latency of the Table 1/8 system.

Not trainable by the pipeline (its card's ``trainable=False``): Perceive-IR conditions its restorer on a frozen,
pretrained OpenAI CLIP ViT-B/32 (image and text towers) and on a caption of every input image written beforehand by
a BLIP captioner (``scripts/get_caption.py``: ``Salesforce/blip-image-captioning-base``); none of these weights can
be downloaded here. The stage-2 restoration network is fully given by the official ``House-yuyu/Perceive-IR``
(``src/basicsr/archs/stage2_arch.py`` ``cyclicPrompt``, ``restormer_arch.py``, ``options/test_5D.yml``; read, not
copied) and CLIP ViT-B/32 is a published architecture (:mod:`baselines.clip_towers`), so this module builds the
test-time network with random weights: sizes and speed are those of the real system, its outputs mean nothing. The
BLIP captioner runs offline before the network and is not part of it (not built, not counted); the caption is a
fixed token sequence here (CLIP's text tower always runs on 77 tokens, so its cost does not depend on it).

:class:`CyclicPrompt`: Restormer encoder (:mod:`baselines.restormer`), then the decoder run twice
(``iter_times=2``) from the same encoder features, the output being the mean of both passes:

- pass 1: every decoder level starts with a cross-attention (:class:`TokenCrossAttention`, 8 heads of 64) from the
  pixels to the prompt = 8 learned vectors shifted by a bottleneck MLP of CLIP's image embedding of the input,
  plus CLIP's text embedding of the caption; then half as many Restormer blocks as Restormer's decoder;
- between the passes: the residue channel prior of the first output (max - min over RGB) goes through a small
  extractor (:class:`ResidueExtractor`, CHIMB blocks with large-kernel attention) to three scales, and CLIP's
  image embedding of the first output through an MLP;
- pass 2: cross-attention to (that embedding, the text embedding) instead, plus a spatial modulation
  ``x + gamma * x + beta`` from the residue features (:class:`Modulation2D`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.clip_towers import TEXT, VISION, TextTower, VisionTower, clip_preprocess, freeze
from baselines.restormer import Downsample, Upsample, pad_to_multiple, transformer_stage
from interir.blocks import LayerNorm2d, SimpleGate
from interir.registry import ModelCard, register_model

# Not trainable by the pipeline: a sizing model with random weights (see the module docstring).


class TokenCrossAttention(nn.Module):
    """Pixels attend to context tokens: ``out(softmax(q k^T / sqrt(d)) v)``, q from pixels, k, v from the context."""

    def __init__(self, channels: int, context_dim: int = 512, heads: int = 8, head_dim: int = 64) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.scale = heads, head_dim**-0.5
        self.to_q = nn.Linear(channels, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, -1))


class Modulation2D(nn.Module):
    """``gamma = sigmoid(1x1(f)), beta = 1x1(f)``, ``f = act(3x3(act(3x3(rcp))))``, act = LeakyReLU(0.2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.gamma = nn.Conv2d(channels, channels, 1)
        self.beta = nn.Conv2d(channels, channels, 1)

    def forward(self, rcp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(rcp), 0.2)), 0.2)
        return torch.sigmoid(self.gamma(f)), self.beta(f)


class DecoderStage(nn.Module):
    """Cross-attention to the prompt tokens (pass 1) or to the output's tokens + residue modulation (pass 2),
    then ``n`` Restormer blocks."""

    def __init__(self, channels: int, heads: int, n: int, expansion: float, context_dim: int = 512) -> None:
        super().__init__()
        self.norm_text, self.norm_img = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.cross_text = TokenCrossAttention(channels, context_dim)
        self.cross_img = TokenCrossAttention(channels, context_dim)
        self.modulation = Modulation2D(channels)
        self.blocks = transformer_stage(channels, heads, n, expansion, bias=False, norm_bias=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor, rcp: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        if rcp is None:
            t = t + self.cross_text(self.norm_text(t), context)
        else:
            t = t + self.cross_img(self.norm_img(t), context)
        x = t.transpose(1, 2).reshape(b, c, h, w)
        if rcp is not None:
            gamma, beta = self.modulation(rcp)
            x = x + gamma * x + beta
        return self.blocks(x)


class LKA(nn.Module):
    """Large-kernel attention: ``x * 1x1(dw7x7_dil3(dw5x5(x)))``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(c, c, 5, padding=2, groups=c)
        self.conv_spatial = nn.Conv2d(c, c, 7, padding=9, groups=c, dilation=3)
        self.conv1 = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


class CHIMB(nn.Module):
    """NAFBlock-like: LN, 1x1, dw3x3, SimpleGate, ``SCA(x) * x + LKA(x)``, 1x1 (+beta); LN, 1x1, dw3x3, GELU gate, 1x1
    (+gamma); beta, gamma start at zero."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = LayerNorm2d(c), LayerNorm2d(c)
        self.conv1, self.conv2 = nn.Conv2d(c, 2 * c, 1), nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.sg = SimpleGate()
        self.lka = LKA(c)
        self.sca = nn.Conv2d(c, c, 1)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.conv4, self.conv5 = nn.Conv2d(c, 2 * c, 1), nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.conv6 = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(self.sca(F.adaptive_avg_pool2d(x, 1)) * x + self.lka(x))
        y = inp + self.beta * x
        x1, x2 = self.conv5(self.conv4(self.norm2(y))).chunk(2, dim=1)
        return y + self.gamma * self.conv6(F.gelu(x1) * x2)


class ResidueExtractor(nn.Module):
    """Residue-channel-prior features: reflect-pad 3x3 + ReLU (3 -> c/2 -> c), then ``ReLU(x + 3x3(CHIMB^n(x)))``."""

    def __init__(self, c: int, n: int = 2) -> None:
        super().__init__()
        self.init1, self.init2 = nn.Conv2d(3, c // 2, 3), nn.Conv2d(c // 2, c, 3)
        self.blocks = nn.Sequential(*(CHIMB(c) for _ in range(n)))
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.init1(F.pad(x, (1, 1, 1, 1), mode="reflect")))
        x = F.relu(self.init2(F.pad(x, (1, 1, 1, 1), mode="reflect")))
        return F.relu(x + self.conv(self.blocks(x)))


CAPTION_TOKENS = 15  # length of the stand-in caption (BLIP captions are about this long)


def caption_tokens(context: int = 77, vocab: int = 49408, n: int = CAPTION_TOKENS) -> torch.Tensor:
    """A fixed stand-in caption, (1, context) token ids: start token, ``n`` tokens, end token (CLIP's last two ids),
    zero padding; the end token sits at position ``n + 1``."""
    tokens = torch.zeros(1, context, dtype=torch.long)
    tokens[0, 1 : n + 1] = torch.arange(1, n + 1) % max(vocab - 2, 1)
    tokens[0, 0], tokens[0, n + 1] = vocab - 2, vocab - 1
    return tokens


def residue_channel(img: torch.Tensor) -> torch.Tensor:
    """max - min over the colour channels (B x 1 x H x W)."""
    return img.amax(dim=1, keepdim=True) - img.amin(dim=1, keepdim=True)


class CyclicPrompt(nn.Module):
    """The test-time Perceive-IR network: CLIP towers (frozen) + the two-pass prompted Restormer (module docstring).

    ``clip``: a :mod:`baselines.clip_towers` configuration name. The caption is a fixed token sequence (start
    token, ``caption_length`` tokens, end token: :func:`caption_tokens`); inputs are reflect-padded to a multiple
    of 8 and cropped back.
    """

    def __init__(self, dim: int = 48, num_blocks: Sequence[int] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: Sequence[int] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, num_vector: int = 8,
                 iter_times: int = 2, clip: str = "vit_b_32", caption_length: int = CAPTION_TOKENS) -> None:
        super().__init__()
        ex, c = ffn_expansion_factor, [dim, 2 * dim, 4 * dim, 8 * dim]
        self.iter_times = iter_times
        self.vision = freeze(VisionTower(**VISION[clip]))
        self.text = freeze(TextTower(**TEXT[clip]))
        embed = VISION[clip]["embed_dim"]
        self.register_buffer("caption", caption_tokens(TEXT[clip]["context"], TEXT[clip]["vocab"], caption_length),
                             persistent=False)
        self.eot = caption_length + 1
        self.learnable_vector = nn.Parameter(0.02 * torch.randn(num_vector, embed))
        self.deg_aware = nn.Sequential(nn.Linear(embed, embed // 16), nn.LayerNorm(embed // 16), nn.ReLU(),
                                       nn.Linear(embed // 16, embed))
        self.hq_mlp = nn.Sequential(nn.Linear(embed, embed), nn.LayerNorm(embed), nn.ReLU(), nn.Linear(embed, embed))

        self.embed = nn.Conv2d(3, dim, 3, padding=1, bias=False)
        self.encoders = nn.ModuleList(transformer_stage(c[i], heads[i], num_blocks[i], ex, False, True)
                                      for i in range(3))
        self.downs = nn.ModuleList(Downsample(c[i]) for i in range(3))
        self.latent = transformer_stage(c[3], heads[3], num_blocks[3], ex, False, True)
        self.ups = nn.ModuleList(Upsample(c[i + 1]) for i in (2, 1, 0))
        self.reduces = nn.ModuleList(nn.Conv2d(2 * c[i], c[i], 1, bias=False) for i in (2, 1))
        self.decoders = nn.ModuleList([DecoderStage(c[2], heads[2], num_blocks[2] // 2, ex, embed),
                                       DecoderStage(c[1], heads[1], num_blocks[1] // 2, ex, embed),
                                       DecoderStage(c[1], heads[0], num_blocks[0] // 2, ex, embed)])
        self.refinement = transformer_stage(c[1], heads[0], num_refinement_blocks, ex, False, True)
        self.output = nn.Conv2d(c[1], 3, 3, padding=1, bias=False)
        self.residue = ResidueExtractor(dim)
        self.rcp_level1 = nn.Conv2d(dim, 2 * dim, 3, padding=1)
        self.rcp_down1, self.rcp_down2 = Downsample(dim), Downsample(2 * dim)

    def _image_embedding(self, img: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the official get_img_feature is no_grad: CLIP is a frozen perception model
            return self.vision(clip_preprocess(img, self.vision.image_size))

    def _decode(self, feat: torch.Tensor, skips: list[torch.Tensor], inp: torch.Tensor, context: torch.Tensor,
                rcps: list[torch.Tensor | None]) -> torch.Tensor:
        x = feat
        for j, dec in enumerate(self.decoders):
            if j > 0:
                x = torch.cat((self.ups[j](x), skips[2 - j]), dim=1)
                x = self.reduces[j](x) if j < 2 else x
            x = dec(x, context, rcps[j])
        return self.output(self.refinement(x)) + inp

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        x = pad_to_multiple(inp, 8)
        b = x.shape[0]
        with torch.no_grad():  # frozen, as the official get_text_feature
            text = self.text(self.caption.expand(b, -1), self.eot)  # (B, 512)
        vector = self.learnable_vector.unsqueeze(0) + self.deg_aware(self._image_embedding(x)).unsqueeze(1)
        prompt = torch.cat((vector, text.unsqueeze(1)), dim=1)  # (B, num_vector + 1, 512)

        feat, skips = self.embed(x), []
        for enc, down in zip(self.encoders, self.downs):
            feat = enc(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.reduces[0](torch.cat((self.ups[0](self.latent(feat)), skips[2]), dim=1))

        outs = [self._decode(feat, skips, x, prompt, [None, None, None])]
        if self.iter_times > 1:  # residue features and output embedding of the first pass, used by all later ones
            r = self.residue(residue_channel(outs[0]).expand(-1, 3, -1, -1))
            r2 = self.rcp_down1(r)
            rcps = [self.rcp_down2(r2), r2, self.rcp_level1(r)]  # decoder order: level 3, 2, 1
            context = torch.stack((self.hq_mlp(self._image_embedding(outs[0])), text), dim=1)
            outs += [self._decode(feat, skips, x, context, rcps) for _ in range(1, self.iter_times)]
        return torch.stack(outs).mean(dim=0)[..., :h, :w]


_PRESETS: dict[str, dict] = {
    # smoke/small exist for the registry and the generic tests only; sizing uses the paper preset
    "smoke": dict(dim=8, num_blocks=(2, 2, 2, 1), num_refinement_blocks=1, clip="tiny", caption_length=4),
    "small": dict(dim=16, num_blocks=(2, 2, 2, 2), num_refinement_blocks=1, clip="tiny", caption_length=4),
    "paper": dict(dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8),
                  ffn_expansion_factor=2.66, num_vector=8, iter_times=2, clip="vit_b_32"),
}


@register_model(
    ModelCard(
        name="perceiveir_sizing",
        trainable=False,
        paper_rows=(("table8", "Perceive-IR"),),
        summary="SIZING ONLY, not trainable: Perceive-IR (TIP 2025) stage-2 network = frozen CLIP "
                "ViT-B/32 image + text towers (random weights here: pretrained CLIP cannot be downloaded) + "
                "two-pass prompted Restormer; own re-implementation of House-yuyu/Perceive-IR for params, MACs and "
                "CPU latency; the offline BLIP captioner is not included",
        deviations=(
            "Random weights everywhere, including both CLIP towers (officially pretrained OpenAI ViT-B/32, "
            "frozen): only sizes and speed are meaningful.",
            "The caption (officially written per image by a BLIP captioner before the network runs) is a fixed "
            "token sequence; the captioner is not built or counted.",
            "The output is the per-sample mean of the two passes; the official forward concatenates the passes "
            "along the batch and averages over it, which mixes the images of a batch (the same for batch 1).",
            "The official hq_mlp declares seven layers in an OrderedDict with repeated names, which leaves four "
            "(Linear, LayerNorm, ReLU, Linear); built as those four.",
            "The two InstanceNorm2d of the residue extractor's input convs, built but unused officially (144 "
            "parameters), are not built.",
            "CLIP's resize to 224x224 is bilinear without antialiasing (torchvision's Resize on tensors "
            "antialiases).",
            "Inputs are reflect-padded to a multiple of 8 inside the model and cropped back.",
            "smoke/small presets are arbitrary small versions for the generic tests (tiny CLIP-like towers).",
        ),
        batch_independent=True,
        stride=8,
        eval_batch=1,
    ),
    presets=_PRESETS,
)
def perceiveir_sizing(**kwargs) -> CyclicPrompt:
    return CyclicPrompt(**kwargs)

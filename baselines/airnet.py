"""AirNet (Li et al., CVPR 2022): the contrastive all-in-one baseline of Table 1.

Re-implementation written for this project from the paper, checked against the official
``XLearning-SCU/2022-CVPR-AirNet`` (``net/model.py``, ``net/encoder.py``, ``net/moco.py``,
``net/DGRN.py``, ``net/deform_conv.py``, ``train.py``; read, not copied). Two parts (Fig. 2):

- **CBDE**, the contrastive-based degradation encoder (Sec. 3.1, :class:`CBDE`): a small ResNet
  (:class:`ResEncoder`) whose full-resolution first block gives the *degradation map* ``D``
  (B x 64 x H x W) and whose pooled output gives the degradation *embedding*; trained with MoCo
  (momentum key encoder, queue of negative keys, InfoNCE with temperature 0.07), the positive pair being
  two patches of the same degraded image.
- **DGRN**, the degradation-guided restoration network (Sec. 3.2, :class:`DGRN`): 5 groups
  (:class:`DGG`) of 5 blocks (:class:`DGB`) at full resolution, 64 channels. Each block has two
  degradation-guided modules (:class:`DGM`): a modulated deformable conv (DCN v2) whose offsets and masks
  are predicted from ``cat(x, D)`` (:class:`ModulatedDeformConv`) plus a spatial feature transform
  ``x * gamma(D) + beta(D)`` (:class:`SFT`).

The official deformable conv is mmcv's ``modulated_deform_conv2d``; here it is
``torchvision.ops.deform_conv2d`` with ``mask=`` (the same operation: bilinear sampling at
offset kernel taps, offsets laid out (dy, dx) per tap, samples scaled by the mask).

Test-time restoration (:meth:`AirNet.forward`): encoder -> (embedding, ``D``) -> restorer(x, ``D``).
Training (:meth:`AirNet.training_losses`): the official two phases, contrastive loss only, then
``L1 + 0.1 * contrastive`` jointly (see :data:`RECIPE`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from interir.registry import ModelCard, Recipe, register_model


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def conv3x3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


# ------------------------------------------------------------------------------------------ DGRN


def deform_conv2d_sampled(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                          padding: int) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d(x, offset, weight, padding=padding, mask=mask)`` (stride 1, no bias, one
    offset group) written with ``F.grid_sample`` and an einsum: the k^2 taps are sampled bilinearly at
    ``p + tap + (dy, dx)`` with zeros outside the image (torchvision's rule), scaled by the mask and contracted
    with the kernel. Same values (to float rounding); its autograd backward is several times faster on the CPU
    than torchvision's CPU kernel, at the cost of keeping the sampled columns (B C k^2 H W) for the backward.
    """
    b, c, h, w = x.shape
    k = weight.shape[-1]
    taps = torch.arange(k, dtype=x.dtype, device=x.device)
    ty, tx = taps.repeat_interleave(k).view(1, k * k, 1, 1), taps.repeat(k).view(1, k * k, 1, 1)
    py = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1) - padding + ty + offset[:, 0::2]
    px = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w) - padding + tx + offset[:, 1::2]
    grid = torch.stack((2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1), dim=-1)  # (B, k^2, H, W, 2)
    cols = F.grid_sample(x, grid.reshape(b, k * k * h, w, 2), mode="bilinear", padding_mode="zeros",
                         align_corners=True)
    cols = cols.reshape(b, c, k * k, h, w) * mask.unsqueeze(1)
    return torch.einsum("bcthw,oct->bohw", cols, weight.reshape(weight.shape[0], c, k * k))


class ModulatedDeformConv(nn.Module):
    """DCN v2 steered by the degradation map (AirNet's ``DCN_layer``): ``dcn(x; offsets, masks from cat(x, D))``.

    A k x k conv on ``cat(x, D)`` predicts 3 k^2 maps: 2 k^2 offsets (dy, dx per tap) and k^2 mask logits
    (sigmoid). The conv starts at zero, so the module starts as a plain conv with every tap scaled by 0.5.
    The kernel is initialised uniform in +-1/sqrt(C k^2) (the official ``reset_parameters``); no bias.
    ``impl``: ``"torchvision"`` (``torchvision.ops.deform_conv2d``) or ``"grid_sample"``
    (:func:`deform_conv2d_sampled`, the same operation, faster to train on the CPU).
    """

    def __init__(self, channels: int, guide_channels: int, kernel_size: int = 3, impl: str = "torchvision") -> None:
        super().__init__()
        if impl not in ("torchvision", "grid_sample"):
            raise ValueError(f"impl must be 'torchvision' or 'grid_sample', got {impl!r}")
        self.k, self.impl = kernel_size, impl
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.offset_mask = nn.Conv2d(channels + guide_channels, 3 * kernel_size**2, kernel_size,
                                     padding=kernel_size // 2)
        bound = 1 / math.sqrt(channels * kernel_size**2)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        om = self.offset_mask(torch.cat((x, guide), dim=1))
        taps = self.k * self.k
        offset, mask = om[:, : 2 * taps], torch.sigmoid(om[:, 2 * taps :])
        if self.impl == "grid_sample":
            return deform_conv2d_sampled(x, offset, self.weight, mask, self.k // 2)
        # imported here: torchvision imports torch._dynamo (2.5 s), which every process that loads the registry
        # (each train and evaluate stage) would pay for a kernel only the paper preset uses
        from torchvision.ops import deform_conv2d

        return deform_conv2d(x, offset, self.weight, padding=self.k // 2, mask=mask)


class SFT(nn.Module):
    """Spatial feature transform: ``x * gamma(D) + beta(D)``; gamma, beta = 1x1 -> LeakyReLU(0.1) -> 1x1 (no bias)."""

    def __init__(self, channels: int, guide_channels: int) -> None:
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(guide_channels, channels, 1, bias=False), nn.LeakyReLU(0.1),
                                 nn.Conv2d(channels, channels, 1, bias=False))

        self.gamma, self.beta = branch(), branch()

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return x * self.gamma(guide) + self.beta(guide)


class DGM(nn.Module):
    """Degradation-guided module: ``x + DCN(x, D) + SFT(x, D)``."""

    def __init__(self, channels: int, guide_channels: int, kernel_size: int = 3, dcn: str = "torchvision") -> None:
        super().__init__()
        self.dcn = ModulatedDeformConv(channels, guide_channels, kernel_size, dcn)
        self.sft = SFT(channels, guide_channels)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return x + self.dcn(x, guide) + self.sft(x, guide)


class DGB(nn.Module):
    """Degradation-guided block: DGM -> act -> 3x3 -> act -> DGM -> act -> 3x3, plus the input (act: LReLU 0.1)."""

    def __init__(self, channels: int, guide_channels: int, kernel_size: int = 3, dcn: str = "torchvision") -> None:
        super().__init__()
        self.dgm1 = DGM(channels, guide_channels, kernel_size, dcn)
        self.conv1 = conv3x3(channels, channels)
        self.dgm2 = DGM(channels, guide_channels, kernel_size, dcn)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        out = _lrelu(self.conv1(_lrelu(self.dgm1(x, guide))))
        return self.conv2(_lrelu(self.dgm2(out, guide))) + x


class DGG(nn.Module):
    """Degradation-guided group: ``n_blocks`` DGBs, a 3x3 conv, plus the input."""

    def __init__(self, channels: int, guide_channels: int, n_blocks: int, kernel_size: int = 3,
                 dcn: str = "torchvision") -> None:
        super().__init__()
        self.blocks = nn.ModuleList(DGB(channels, guide_channels, kernel_size, dcn) for _ in range(n_blocks))
        self.conv = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        res = x
        for block in self.blocks:
            res = block(res, guide)
        return self.conv(res) + x


class DGRN(nn.Module):
    """Degradation-guided restoration network: 3x3 head -> DGGs -> 3x3 (+ head output) -> 3x3 tail.

    As in the official model, the output is the tail conv itself (no global image residual).
    """

    def __init__(self, n_feats: int = 64, n_groups: int = 5, n_blocks: int = 5, guide_channels: int = 64,
                 kernel_size: int = 3, in_channels: int = 3, dcn: str = "torchvision") -> None:
        super().__init__()
        self.head = conv3x3(in_channels, n_feats)
        self.groups = nn.ModuleList(DGG(n_feats, guide_channels, n_blocks, kernel_size, dcn)
                                    for _ in range(n_groups))
        self.conv = conv3x3(n_feats, n_feats)
        self.tail = conv3x3(n_feats, in_channels)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        res = x
        for group in self.groups:
            res = group(res, guide)
        return self.tail(self.conv(res) + x)


# ------------------------------------------------------------------------------------------ CBDE


class ResBlock(nn.Module):
    """``LReLU(BN(3x3(LReLU(BN(3x3_s(x))))) + BN(1x1_s(x)))``, convs without bias, stride ``s``."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _lrelu(self.body(x) + self.shortcut(x))


class ResEncoder(nn.Module):
    """``pre``: full-resolution ResBlock 3 -> w (the degradation map D); ``down``: ResBlocks w -> 2w -> 4w, stride 2
    each, then global average pooling (the embedding, 4w); ``mlp``: 4w -> 4w -> 4w (the contrastive projection)."""

    def __init__(self, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        self.pre = ResBlock(in_channels, width)
        self.down = nn.Sequential(ResBlock(width, 2 * width, stride=2), ResBlock(2 * width, 4 * width, stride=2))
        self.mlp = nn.Sequential(nn.Linear(4 * width, 4 * width), nn.LeakyReLU(0.1), nn.Linear(4 * width, 4 * width))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embedding, projection, degradation map)."""
        inter = self.pre(x)
        fea = self.down(inter).mean(dim=(-2, -1))
        return fea, self.mlp(fea), inter


class CBDE(nn.Module):
    """MoCo around :class:`ResEncoder`: query encoder (trained), key encoder (momentum copy, no gradients),
    a queue of ``queue_size`` L2-normalised keys (random at init), temperature ``temperature``.

    The key encoder's parameters are ``parameters()`` with ``requires_grad=False`` (as the official one,
    so it counts in the parameter total); it is updated only by :meth:`contrast`.
    """

    def __init__(self, width: int = 64, queue_size: int = 1280, momentum: float = 0.999, temperature: float = 0.07,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.momentum, self.temperature = momentum, temperature
        self.query = ResEncoder(width, in_channels)
        self.key = ResEncoder(width, in_channels)
        for pq, pk in zip(self.query.parameters(), self.key.parameters()):
            pk.data.copy_(pq.data)
            pk.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(4 * width, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Test time: (embedding, degradation map) of the query encoder."""
        fea, _, inter = self.query(x)
        return fea, inter

    @torch.no_grad()
    def _momentum_update(self) -> None:
        for pq, pk in zip(self.query.parameters(), self.key.parameters()):
            pk.mul_(self.momentum).add_(pq.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        size = self.queue.shape[1]
        keys = keys[-size:]
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[:, idx] = keys.t().to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + keys.shape[0]) % size

    def contrast(self, x_query: torch.Tensor, x_key: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training step of MoCo: (embedding, logits (B, 1 + K), labels (zeros), degradation map).

        Updates the key encoder by momentum, then enqueues this batch's keys (oldest keys are replaced).
        """
        fea, q, inter = self.query(x_query)
        q = F.normalize(q, dim=1)
        with torch.no_grad():
            self._momentum_update()
            k = F.normalize(self.key(x_key)[1], dim=1)
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.clone().detach()
        logits = torch.cat((l_pos, l_neg), dim=1) / self.temperature
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._enqueue(k)
        return fea, logits, labels, inter


# ------------------------------------------------------------------------------------------ AirNet


def random_key_crop(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random half-size crop of ``x`` (same window for the whole batch): the default MoCo key."""
    h, w = x.shape[-2:]
    kh, kw = max(1, h // 2), max(1, w // 2)
    i = int(torch.randint(0, h - kh + 1, (), generator=generator))
    j = int(torch.randint(0, w - kw + 1, (), generator=generator))
    return x[..., i : i + kh, j : j + kw]


class AirNet(nn.Module):
    """CBDE + DGRN. ``forward(x)`` restores; ``training_losses`` gives the official training losses."""

    # forward() leaves the query encoder's pooled branch and projection without gradients (only training_losses
    # uses them): the harness's DDP wrapper reads this and sets find_unused_parameters.
    ddp_find_unused_parameters = True

    def __init__(self, n_feats: int = 64, n_groups: int = 5, n_blocks: int = 5, kernel_size: int = 3,
                 encoder_width: int = 64, queue_size: int = 1280, momentum: float = 0.999,
                 temperature: float = 0.07, in_channels: int = 3, dcn: str = "torchvision") -> None:
        super().__init__()
        self.encoder = CBDE(encoder_width, queue_size, momentum, temperature, in_channels)
        self.restorer = DGRN(n_feats, n_groups, n_blocks, encoder_width, kernel_size, in_channels, dcn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restoration: query encoder -> degradation map D -> DGRN(x, D).

        In eval mode the encoder also computes the embedding, as the official test-time forward does
        (the restorer does not use it; its 7.5 G MACs at 256x256 are part of the official count). In
        training mode that unused branch is skipped: nothing would use it; the contrastive loss that trains
        it is :meth:`training_losses` (hence :attr:`ddp_find_unused_parameters`).
        """
        if self.training:
            inter = self.encoder.query.pre(x)
        else:
            _, inter = self.encoder(x)
        return self.restorer(x, inter)

    def training_losses(self, x: torch.Tensor, y: torch.Tensor | None = None, x_key: torch.Tensor | None = None,
                        phase: str = "joint", contrast_weight: float = 0.1) -> dict[str, torch.Tensor]:
        """The official training objective (``train.py``), one step's losses; call in training mode.

        ``phase="encoder"`` (the first 100 of 1000 epochs): ``loss = CE(logits, 0)``, the MoCo InfoNCE loss of
        the encoder alone. ``phase="joint"``: ``loss = L1(DGRN(x, D), y) + contrast_weight * CE``. ``x_key`` is
        the positive key: officially a second patch of the same degraded image (same size, another random
        position); when ``None``, a random half-size crop of ``x`` (:func:`random_key_crop`). Each call
        updates the key encoder by momentum and pushes the batch's keys into the queue.

        Returns ``loss``, ``contrast``, and in the joint phase ``l1`` and ``restored``.
        """
        if phase not in ("encoder", "joint"):
            raise ValueError(f"phase must be 'encoder' or 'joint', got {phase!r}")
        if x_key is None:
            x_key = random_key_crop(x)
        _, logits, labels, inter = self.encoder.contrast(x, x_key)
        contrast = F.cross_entropy(logits, labels)
        if phase == "encoder":
            return {"loss": contrast, "contrast": contrast}
        if y is None:
            raise ValueError("the joint phase needs the clean target y")
        restored = self.restorer(x, inter)
        l1 = F.l1_loss(restored, y)
        return {"loss": l1 + contrast_weight * contrast, "contrast": contrast, "l1": l1, "restored": restored}


# The official training recipe (XLearning-SCU/2022-CVPR-AirNet @ bedea82).
RECIPE = Recipe(
    source="XLearning-SCU/2022-CVPR-AirNet@bedea82 train.py (l.27-84), option.py (l.8-31), "
           "utils/dataset_utils.py (l.152-165), net/encoder.py (l.53-56)",
    optimizer="adam", lr=1e-3, lr_min=1e-5, betas=(0.9, 0.999), weight_decay=0.0, schedule="cosine", loss="model",
    encoder_fraction=0.1, batch=5, patch=128, iters=400_000,
    notes="two phases (training_losses): the encoder alone with the MoCo InfoNCE loss for the first 100 of 1000 "
          "epochs, then L1 + 0.1 x InfoNCE jointly; official learning rate piecewise constant (1e-3 to epoch 60, "
          "1e-4 to 100, then halved every 125 epochs; here: cosine from 1e-3 to 1e-5); 400 steps per epoch at batch "
          "5 (one per degradation type), patch 128; the key is a second patch of the same degraded image (here, "
          "without a second patch, a half-size crop of the first); one process (the official trains on one GPU)",
)

_PRESETS: dict[str, dict] = {
    # smoke/small: 3 x 3 blocks (paper 5 x 5), restorer and encoder widths equal as in the paper (64 -> 10 / 22), so
    # that the parameter and MAC ratios to InterIR stay within 25 % of the paper presets' (benchmarks/preset_ratios.py
    # --search airnet); the grid_sample deformable conv, the same operation, several times faster to train on the CPU
    "smoke": dict(n_feats=10, n_groups=3, n_blocks=3, encoder_width=10, queue_size=64, dcn="grid_sample"),
    "small": dict(n_feats=22, n_groups=3, n_blocks=3, encoder_width=22, queue_size=256, dcn="grid_sample"),
    "paper": dict(n_feats=64, n_groups=5, n_blocks=5, kernel_size=3, encoder_width=64, queue_size=1280,
                  momentum=0.999, temperature=0.07),
}


@register_model(
    ModelCard(
        name="airnet",
        paper_rows=(("table1", "AirNet"),),
        recipe=RECIPE,
        summary="AirNet (CVPR 2022): contrastive degradation encoder (MoCo) + degradation-guided restorer with "
                "DCN v2 and SFT, 8.93 M params; own re-implementation of XLearning-SCU/2022-CVPR-AirNet (no "
                "licence file in the official repository)",
        deviations=(
            "Deformable conv: torchvision.ops.deform_conv2d with mask= instead of mmcv's modulated_deform_conv2d "
            "(same operation and offset layout); the smoke and small presets use dcn='grid_sample', the same "
            "operation with F.grid_sample + einsum, whose backward is about 7x faster on the CPU.",
            "forward() in training mode skips the encoder's pooled embedding and projection (unused by the "
            "restorer); the harness's L1 loop therefore trains only the degradation map path (under DDP with "
            "find_unused_parameters, set by the class attribute ddp_find_unused_parameters). The official "
            "contrastive objective and its two phases are training_losses(x, y, x_key, phase) for a loop that "
            "calls it.",
            "MoCo queue: the enqueue wraps around, so any batch size works (the official asserts that the queue "
            "size is a multiple of the batch); the default key is a half-size crop of the query patch when no "
            "second patch of the same image is given.",
            "The queue size is a preset value (official: 256 * batch size = 1280); with DDP each process keeps "
            "its own queue (the official trains on one GPU).",
            "Widths and depths are parameters (official: fixed 64 channels, 5 x 5 blocks, encoder 64/128/256); "
            "smoke/small presets are smaller.",
        ),
        batch_independent=True,  # eval mode: BatchNorm on running statistics, everything else per sample
        stride=1,
        eval_batch=1,  # full-resolution CNN, like NAFNet and FDTANet (not measured)
    ),
    presets=_PRESETS,
)
def airnet(**kwargs) -> AirNet:
    return AirNet(**kwargs)

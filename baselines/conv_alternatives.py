"""Table 7: InterIR with other input-adaptive convolutions in place of the explainable one.

Both alternatives are depthwise conv factories ``(channels) -> nn.Module`` passed to the
``interir`` model's ``conv`` switch (:class:`interir.model.InterIR`), so everything except the
EPBlocks' depthwise 3x3 is the InterIR model itself.

- :class:`CoMoConv2d` (``interir_como``): the CoMo variant found commented out in
  ``YuanfeiHuang/CoMoNet`` ``src/basic_module.py``: a learned mapping (grouped 1x1 conv + sigmoid)
  on the pooled activation mask before the softmax, and the residual modulation
  ``A = 1 + (softmax - 1/k^2)`` instead of ``k^2 * softmax``. It subclasses InterIR's
  :class:`~interir.xconv.ExplainableConv2d` (same mask, threshold and straight-through estimator,
  same batch-folded grouped convolution) and only replaces the attention of Eqs. 17-18.
- :class:`ARConv2d` (``interir_arconv``): adaptive rectangular convolution (Wang et al., CVPR 2025,
  ``WangXueyang-uestc/ARConv`` ``models/ARConv.py``) in depthwise form: per-pixel sampling-rectangle
  height/width, an N_X x N_Y in {3, 5, 7}^2 sampling grid, one kernel per grid size, modulation and bias
  maps. The epoch-dependent grid freezing of the official code is replaced by a step counter
  (see :class:`ARConv2d`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from interir.model import PRESETS as INTERIR_PRESETS
from interir.model import InterIR
from interir.registry import ModelCard, register_model
from interir.xconv import ExplainableConv2d

# --------------------------------------------------------------------------------------------- CoMo


class CoMoConv2d(ExplainableConv2d):
    """CoMo with the learned attention mapping (Table 7 "CoMo", reconstruction of the commented-out variant).

    Mask and pooling as Eqs. 16-17 (threshold learned through the parent's straight-through estimator);
    then ``A_b = 1 + softmax_{k x k}(sigmoid(map(Mbar_b))) - 1/k^2``, where ``map`` is a 1x1 conv over the
    input channels with groups of ``group_width`` channels (``group_width=None``: a full Cin -> Cin 1x1,
    the literal reading). ``A`` averages to 1 over the kernel, so a uniform attention is the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, group_width: int | None = 16, **kw):
        kw["scale_attention"] = False
        super().__init__(in_channels, out_channels, kernel_size, **kw)
        gw = in_channels if group_width is None else min(group_width, in_channels)
        if in_channels % gw:
            raise ValueError(f"in_channels={in_channels} not divisible by group_width={gw}")
        self.mapping = nn.Conv2d(in_channels, in_channels, 1, groups=in_channels // gw)

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kh, kw = self.kernel_size
        tau = self.threshold.view(1, -1, 1, 1).to(x.dtype)
        hard = (x >= tau).to(x.dtype)
        pooled = F.adaptive_avg_pool2d(hard, (kh, kw))
        if torch.is_grad_enabled() and (self.threshold.requires_grad or x.requires_grad):
            soft = F.adaptive_avg_pool2d(torch.sigmoid((x - tau) / self.ste_temperature), (kh, kw))
            pooled = pooled + (soft - soft.detach())
        b, c = pooled.shape[:2]
        logits = torch.sigmoid(self.mapping(pooled)).reshape(b, c, kh * kw)
        att = 1.0 + torch.softmax(logits, dim=-1) - 1.0 / (kh * kw)
        return hard, att.reshape(b, c, kh, kw)


def como_dw3x3(channels: int, group_width: int | None = 16) -> nn.Module:
    """Depthwise 3x3 CoMo conv (drop-in for the EPBlock's ``dw_conv``)."""
    return CoMoConv2d(channels, channels, 3, padding=1, groups=channels, bias=True, group_width=group_width)


# ------------------------------------------------------------------------------------------- ARConv


class _GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class GradScale(nn.Module):
    """Identity forward, gradient times ``scale`` backward (ARConv's ``_set_lr`` backward hooks)."""

    def __init__(self, scale: float = 0.1) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GradScale.apply(x, self.scale)


def _dw3x3(c: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, padding=1, groups=c)


def _modulation_net(c: int, dropout: float, tanh: bool) -> nn.Sequential:
    """m_conv / b_conv: three 3x3 convs with LeakyReLU and Dropout2d; the first conv learns 10x slower."""
    layers: list[nn.Module] = [GradScale(), _dw3x3(c), GradScale(), nn.LeakyReLU(), nn.Dropout2d(dropout)]
    layers += [_dw3x3(c), nn.LeakyReLU(), nn.Dropout2d(dropout), _dw3x3(c)]
    if tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _size_net(c: int) -> nn.Sequential:
    """l_conv / w_conv: 3x3 conv c -> 1, BN, LeakyReLU, 1x1, BN, sigmoid (a map in (0, 1))."""
    return nn.Sequential(
        GradScale(), nn.Conv2d(c, 1, 3, padding=1), GradScale(), nn.BatchNorm2d(1), nn.LeakyReLU(),
        nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid(),
    )


GRID_SIZES = (33, 35, 53, 37, 73, 55, 57, 75, 77)  # N_X * 10 + N_Y, the official kernel list


class ARConv2d(nn.Module):
    """Depthwise adaptive rectangular convolution (ARConv, CVPR 2025) for the EPBlock.

    Per pixel: height l and width w of the sampling rectangle, in [1, hw_max], from ``p_conv`` (on 100 x)
    and the ``l``/``w`` heads; N_X x N_Y points are sampled bilinearly (zeros outside) at
    ``(i + a * l / N_X, j + b * w / N_Y)`` for a, b in the centred integer grid, laid out as an
    (h N_X) x (w N_Y) map and convolved with the N_X x N_Y kernel of that grid size at stride (N_X, N_Y);
    ``out = conv(samples) * m + b`` with the modulation ``m`` (tanh) and bias ``b`` maps.

    Grid-size selection (the official code picks it from the batch mean of l, w for epochs <= 100 and then
    freezes it in ``reserved_NXY``): here, during the first ``freeze_after`` forward passes in training mode,
    N = floor(mean / (hw_max // 9)) made odd and clamped to [3, 7] is chosen from the batch; afterwards, and
    always in eval mode, the stored grid (buffer ``grid``, saved in checkpoints, initially 3 x 3) is used.
    ``freeze_after=0`` keeps 3 x 3 forever. Eval mode is batch-independent (BN running stats, stored grid).

    Deviation: the official ARConv is a full convolution (cin -> cout); as a drop-in for a depthwise 3x3
    every conv here is depthwise except the 1-channel l/w heads (a full ARConv in every EPBlock would add
    hundreds of millions of parameters; the depthwise one adds about the +10 M of Table 7).
    """

    def __init__(self, channels: int, hw_max: int = 9, freeze_after: int = 0, dropout: float = 0.3) -> None:
        super().__init__()
        if hw_max < 3:
            raise ValueError("hw_max must be >= 3")
        self.channels = channels
        self.hw_max = hw_max
        self.freeze_after = freeze_after
        self.kernels = nn.ModuleList(
            nn.Conv2d(channels, channels, (s // 10, s % 10), stride=(s // 10, s % 10), groups=channels)
            for s in GRID_SIZES
        )
        self.m_conv = _modulation_net(channels, dropout, tanh=True)
        self.b_conv = _modulation_net(channels, dropout, tanh=False)
        self.p_conv = nn.Sequential(
            GradScale(), _dw3x3(channels), GradScale(), nn.BatchNorm2d(channels), nn.LeakyReLU(),
            _dw3x3(channels), nn.BatchNorm2d(channels), nn.LeakyReLU(),
        )
        self.l_conv = _size_net(channels)
        self.w_conv = _size_net(channels)
        self.sample_dropout = nn.Dropout2d(dropout)
        self.register_buffer("grid", torch.tensor([3, 3], dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._grid_cache: tuple[int, int] = (3, 3)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):  # keep the python cache in sync; a grid must be one of GRID_SIZES
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if self.grid.device.type != "meta":
            grid = (int(self.grid[0]), int(self.grid[1]))
            if grid[0] * 10 + grid[1] not in GRID_SIZES:
                error_msgs.append(f"{prefix}grid: {grid[0]}x{grid[1]} is not an ARConv grid size")
            else:
                self._grid_cache = grid

    def _choose_grid(self, length: torch.Tensor, width: torch.Tensor) -> tuple[int, int]:
        scale = max(self.hw_max // 9, 1)

        def pick(v: torch.Tensor) -> int:
            n = int(v.detach().mean().item() // scale)
            n = n - 1 if n % 2 == 0 else n
            return min(max(n, 3), 7)

        return pick(length), pick(width)

    def sample(self, x: torch.Tensor, length: torch.Tensor, width: torch.Tensor, nx: int, ny: int) -> torch.Tensor:
        """Bilinear samples laid out as (B, C, h*nx, w*ny): block (i, j) holds pixel (i, j)'s nx x ny points."""
        b, _, h, w = x.shape
        dev, dt = x.device, length.dtype
        ai = torch.arange(nx, device=dev, dtype=dt) - (nx - 1) / 2  # row offsets in grid units
        bj = torch.arange(ny, device=dev, dtype=dt) - (ny - 1) / 2
        rows = torch.arange(h, device=dev, dtype=dt).view(1, h, 1, 1, 1) + ai.view(1, 1, nx, 1, 1) * (
            length.view(b, h, 1, w, 1) / nx
        )
        cols = torch.arange(w, device=dev, dtype=dt).view(1, 1, 1, w, 1) + bj.view(1, 1, 1, 1, ny) * (
            width.view(b, h, 1, w, 1) / ny
        )
        rows, cols = torch.broadcast_tensors(rows, cols)  # (b, h, nx, w, ny)
        gy = rows.reshape(b, h * nx, w * ny) * (2 / max(h - 1, 1)) - 1
        gx = cols.reshape(b, h * nx, w * ny) * (2 / max(w - 1, 1)) - 1
        grid = torch.stack((gx, gy), dim=-1).to(x.dtype)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.m_conv(x)
        bias = self.b_conv(x)
        feat = self.p_conv(x * 100)
        length = self.l_conv(feat) * (self.hw_max - 1) + 1  # (B, 1, h, w), in [1, hw_max]
        width = self.w_conv(feat) * (self.hw_max - 1) + 1
        if self.training and int(self.steps) < self.freeze_after:
            self._grid_cache = self._choose_grid(length, width)
            self.grid.copy_(torch.tensor(self._grid_cache))
            self.steps += 1
        nx, ny = self._grid_cache
        samples = self.sample(x, length, width, nx, ny)
        out = self.kernels[GRID_SIZES.index(nx * 10 + ny)](self.sample_dropout(samples))
        return out * m + bias


def arconv_dw3x3(channels: int, hw_max: int = 9, freeze_after: int = 0) -> nn.Module:
    """Depthwise ARConv (drop-in for the EPBlock's ``dw_conv``)."""
    return ARConv2d(channels, hw_max=hw_max, freeze_after=freeze_after)


# ----------------------------------------------------------------------------------- registrations


def _presets(**extra: dict) -> dict[str, dict]:
    return {name: {**INTERIR_PRESETS[name], **extra.get(name, {})} for name in ("smoke", "small", "paper")}


@register_model(
    ModelCard(
        name="interir_como",
        summary="InterIR with CoMo (learned-mapping variant) in place of the explainable conv (Table 7)",
        paper_rows=(("table7", "CoMo"),),
        deviations=(
            "CoMo variant reconstructed from the commented-out code of CoMoNet: grouped 1x1 conv + sigmoid on the "
            "pooled mask, A = 1 + softmax - 1/k^2 (no k^2 scaling).",
            "Mapping groups of 16 channels (como_group_width=16): the full Cin x Cin mapping would add ~7 M "
            "parameters at the paper preset, the grouped one ~0.5 M as reported; como_group_width=None gives "
            "the full mapping.",
            "Threshold learned with InterIR's straight-through estimator (CoMo's own code never trains it).",
            "All other InterIR deviations apply (see the interir card).",
        ),
        batch_independent=True,
        stride=8,
    ),
    presets=_presets(smoke={"como_group_width": 16}, small={"como_group_width": 16}, paper={"como_group_width": 16}),
)
def interir_como(como_group_width: int | None = 16, **kwargs) -> InterIR:
    def conv(channels: int) -> nn.Module:
        return como_dw3x3(channels, group_width=como_group_width)

    return InterIR(conv=conv, **kwargs)


@register_model(
    ModelCard(
        name="interir_arconv",
        summary="InterIR with a depthwise ARConv in place of the explainable conv (Table 7)",
        paper_rows=(("table7", "ARConv"),),
        deviations=(
            "ARConv in depthwise form (the drop-in replaces a depthwise 3x3); the official ARConv is a full conv.",
            "Grid size (N_X, N_Y) chosen from batch statistics for the first arconv_freeze_after training "
            "forward passes, then frozen (official: epochs <= 100, then frozen); smoke/small presets keep 3x3 "
            "fixed (arconv_freeze_after=0). Eval mode always uses the stored grid.",
            "Sampling by F.grid_sample (bilinear, zeros outside) instead of the official gather code; the "
            "official backward hooks are reproduced by gradient-scaling identities around the sub-nets' first "
            "layers.",
            "hw_range = [1, 9] (arconv_hw_max=9, the official default).",
            "Batch independence holds in eval mode only (BatchNorm, batch-mean grid choice in training).",
        ),
        batch_independent=True,
        stride=8,
    ),
    presets=_presets(
        smoke={"arconv_hw_max": 9, "arconv_freeze_after": 0},
        small={"arconv_hw_max": 9, "arconv_freeze_after": 0},
        # about the official first 100 of 600 epochs, on a 300k-iteration schedule
        paper={"arconv_hw_max": 9, "arconv_freeze_after": 50_000},
    ),
)
def interir_arconv(arconv_hw_max: int = 9, arconv_freeze_after: int = 0, **kwargs) -> InterIR:
    def conv(channels: int) -> nn.Module:
        return arconv_dw3x3(channels, hw_max=arconv_hw_max, freeze_after=arconv_freeze_after)

    net = InterIR(conv=conv, **kwargs)
    net.ddp_find_unused_parameters = True  # a step uses the kernels of one sampling-grid size, not the others
    return net


__all__ = ["ARConv2d", "CoMoConv2d", "GradScale", "arconv_dw3x3", "como_dw3x3"]

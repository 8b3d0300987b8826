"""DeepSN-Net (Deng et al., TPAMI 2025) on the shared unfolding frame, plus the Table 4 ladder.

Re-implementation of ``pandazcx/DeepSN-Net`` ``Model/DeepSN_Net.py`` (class ``newton``) written
for this project; the frame itself (pixel-unshuffle, Eq. 11 init, stages, global residual) is
:class:`interir.unfolding.UnfoldingNet`. What this file adds:

- :class:`BasicBlock` - the learned operator E(.) everywhere (official ``Basic_block``): a spatial
  branch (SE channel attention -> 3x3 conv -> ReLU -> 3x3 conv) and a frequency branch
  (BatchNorm -> rfft2 -> complex channel mixing -> irfft2, soft-clipped by the spatial branch);
- :class:`Derivative`, :class:`AuxiliaryModule` - the z-subproblem (prox value ``au`` and its
  generalised derivative ``sd``);
- :class:`SubtractionImageUpdate` - Suppl. Eq. 28, the Newton-type image step with the
  subtraction ``H^T H x - H^T y`` that InterIR's RESM (Eq. 12 / Suppl. Eq. 31) replaces;
- :class:`PQUpdate` - the P (= P1) and Q (= P2) updates, :class:`MultiplierUpdate` - the
  multiplier step.

The Table 4 ladder is one family, :func:`build_deepsn`, with three switches (see
``docs/baselines.md``): ``conv`` (plain / explainable 3x3 convs inside every BasicBlock),
``image_update`` (``"subtraction"`` = Eq. 28 / ``"resm"`` = InterIR's RESM, Eq. 12) and
``pq_multiplier`` (``"deepsn"`` / ``"interir"`` = InterIR's DMUM, Eq. 13, and MUM, Eq. 14). ``deepsn_all`` turns
all three on (the harness's control between ``deepsn_net`` and ``interir``).

The official code builds ``depth`` (15) ``Image_update`` modules but its last call reuses
``image_update_list[depth - 2]``, so the 15th is never used. Here all ``depth`` image updates are
distinct and used (the frame's last stage owns a fresh one): the parameter count equals the
official count (which includes the unused module) and the compute is identical; only the
weight sharing of the last two image steps differs. ``reuse_last_image_update=True`` reproduces
the official sharing instead (then the model has one Image_update fewer parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn

from interir.registry import ModelCard, Recipe, register_model
from interir.unfolding import OpFactory, UnfoldingNet, kron_adjoint, kron_apply, no_autocast, normalize_matrix

# A factory for the 3x3 convolutions inside BasicBlock: (in_channels, out_channels) -> module.
Conv3x3Factory = Callable[[int, int], nn.Module]


def plain_conv3x3(cin: int, cout: int) -> nn.Module:
    """The official 3x3 convolution of Basic_block (no bias)."""
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def explainable_conv3x3(cin: int, cout: int) -> nn.Module:
    """InterIR's explainable convolution (Eqs. 15-20) as a full 3x3 conv, no bias."""
    from interir.xconv import ExplainableConv2d

    return ExplainableConv2d(cin, cout, 3, padding=1, groups=1, bias=False)


def _conv3x3_factory(conv: str | Conv3x3Factory) -> Conv3x3Factory:
    if callable(conv):
        return conv
    table = {"plain": plain_conv3x3, "xconv": explainable_conv3x3}
    if conv not in table:
        raise ValueError(f"conv must be one of {sorted(table)} or a callable, got {conv!r}")
    return table[conv]


class ChannelAttention(nn.Module):
    """SE channel attention of Basic_block: pool, 1x1 (c -> c/r), ReLU, 1x1 (c/r -> c), sigmoid, product."""

    def __init__(self, channels: int, reduction: int = 3) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.body = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.body(x)


class FrequencyMixing(nn.Module):
    """Frequency branch of Basic_block: BN, rfft2, complex c -> rf*c mixing, ReLU (real, imag), -> c, irfft2.

    The complex weights are stored as (2, c_in, c_out) real tensors (real, imaginary part) with
    Kaiming-uniform init, as in the official code. BatchNorm makes the branch batch-dependent in
    training mode; in eval mode it is a fixed affine map.
    """

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        hidden = channels * ratio
        self.norm = nn.BatchNorm2d(channels)
        self.w1 = nn.Parameter(torch.empty(2, channels, hidden))
        self.w2 = nn.Parameter(torch.empty(2, hidden, channels))
        nn.init.kaiming_uniform_(self.w1)
        nn.init.kaiming_uniform_(self.w2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        with no_autocast(x.device.type):
            y = torch.fft.rfft2(self.norm(x).float(), norm="backward").permute(0, 2, 3, 1)
            y = torch.matmul(y, torch.complex(self.w1[0], self.w1[1]))
            y = torch.complex(torch.relu(y.real), torch.relu(y.imag))
            y = torch.matmul(y, torch.complex(self.w2[0], self.w2[1]))
            y = torch.fft.irfft2(y.permute(0, 3, 1, 2), s=size, norm="backward")
        return y.to(x.dtype)


class BasicBlock(nn.Module):
    """The learned operator E(.) of DeepSN-Net (official ``Basic_block``): y1 + y2 + x.

    y1 = conv3x3(ReLU(conv3x3(CA(x)))) with c -> rs*c -> c; y2 = the frequency branch,
    soft-clipped as ymax * tanh(y2 / ymax) with ymax = max(1, channel-max of y1).
    ``conv`` builds the two 3x3 convs (plain or explainable: the Table 4/5 "+ explainable conv").
    """

    def __init__(
        self, channels: int, ratio_spatial: int = 2, ratio_freq: int = 4, conv: Conv3x3Factory = plain_conv3x3
    ) -> None:
        super().__init__()
        self.ca = ChannelAttention(channels)
        self.conv1 = conv(channels, channels * ratio_spatial)
        self.relu = nn.ReLU()
        self.conv2 = conv(channels * ratio_spatial, channels)
        self.freq = FrequencyMixing(channels, ratio_freq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.conv2(self.relu(self.conv1(self.ca(x))))
        ymax = y1.amax(dim=1, keepdim=True).clamp_min(1.0)
        y2 = self.freq(x)
        return y1 + ymax * torch.tanh(y2 / ymax) + x


class Derivative(nn.Module):
    """The "Convs" head (official ``derivate``): 1x1 (c -> k*c), ReLU, 1x1 (k*c -> c), with bias."""

    def __init__(self, channels: int, coefficient: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * coefficient, 1),
            nn.ReLU(),
            nn.Conv2d(channels * coefficient, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AuxiliaryModule(nn.Module):
    """z-subproblem: t = E(x) + m; returns (au, sd) = (prox value, generalised derivative of the prox)."""

    def __init__(self, channels: int, op: OpFactory, coefficient: int = 16) -> None:
        super().__init__()
        self.op = op(channels)
        self.prox = Derivative(channels, coefficient)
        self.deriv = Derivative(channels, coefficient)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.op(x) + m
        return self.prox(t), self.deriv(t)


def normal_operator(x: torch.Tensor, P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """H^T H x = P^T (P x Q) Q^T per sample and channel (float32)."""
    return kron_adjoint(kron_apply(x, P, Q), P, Q)


class SubtractionImageUpdate(nn.Module):
    """DeepSN-Net's image step, Suppl. Eq. 28 (official ``Image_update`` with repeat = 1).

    (au, sd) = Aux(x, m); F = H^T H x - H^T z + E2(E1(x) + m + au)      (the subtraction form)
    v = H^T H F + E4(E3(F) * (1 - sd));   x <- x - eta * v,  eta learnable, init 0.01.
    """

    def __init__(self, channels: int, op: OpFactory, coefficient: int = 16) -> None:
        super().__init__()
        self.aux = AuxiliaryModule(channels, op, coefficient)
        self.e1, self.e2, self.e3, self.e4 = (op(channels) for _ in range(4))
        self.eta = nn.Parameter(torch.full((1,), 0.01))

    def residual(self, x, z, m, P, Q) -> tuple[torch.Tensor, torch.Tensor]:
        """F(x) of Eq. 28 and the prox derivative sd."""
        au, sd = self.aux(x, m)
        hx = normal_operator(x, P, Q)
        hz = kron_adjoint(z, P, Q)
        return hx - hz + self.e2(self.e1(x) + m + au), sd

    def forward(self, x, z, m, P, Q) -> torch.Tensor:
        f, sd = self.residual(x, z, m, P, Q)
        v = normal_operator(f, P, Q) + self.e4(self.e3(f) * (1 - sd))
        return x - self.eta * v


class PQUpdate(nn.Module):
    """Degradation-matrix step (official ``Matrix_P_update`` then ``Matrix_Q_update``).

    P: [m1, m2] = E_P(cat(x Q, z)); P = nrm(m1 m2^T).   Q: [n1, n2] = E_Q(cat(P x, z)); Q = nrm(n1^T n2).
    The new P is used for the Q step, as in the official stage order. ``op`` builds E_P, E_Q on 2c
    channels (officially a Basic_block with both ratios 1).
    """

    def __init__(self, channels: int, op: OpFactory) -> None:
        super().__init__()
        self.op_p = op(2 * channels)
        self.op_q = op(2 * channels)

    def forward(self, x, z, P, Q) -> tuple[torch.Tensor, torch.Tensor]:
        with no_autocast(x.device.type):
            xQ = torch.matmul(x.float(), Q.float())
        m1, m2 = self.op_p(torch.cat((xQ.to(x.dtype), z), dim=1)).chunk(2, dim=1)
        with no_autocast(x.device.type):
            P = normalize_matrix(torch.matmul(m1.float(), m2.float().transpose(-1, -2)))
            Px = torch.matmul(P, x.float())
        n1, n2 = self.op_q(torch.cat((Px.to(x.dtype), z), dim=1)).chunk(2, dim=1)
        with no_autocast(x.device.type):
            Q = normalize_matrix(torch.matmul(n1.float().transpose(-1, -2), n2.float()))
        return P, Q


class MultiplierUpdate(nn.Module):
    """Multiplier step (official ``Multiplier_update``): m <- m + E(x) - au, au from its own Aux module."""

    def __init__(self, channels: int, op: OpFactory, coefficient: int = 16) -> None:
        super().__init__()
        self.op = op(channels)
        self.aux = AuxiliaryModule(channels, op, coefficient)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        au, _ = self.aux(x, m)
        return m + self.op(x) - au


def build_deepsn(
    width: int = 48,
    depth: int = 15,
    down: int = 4,
    ratio_spatial: int = 2,
    ratio_freq: int = 4,
    pq_ratio_spatial: int = 1,
    pq_ratio_freq: int = 1,
    coefficient: int = 16,
    conv: str | Conv3x3Factory = "plain",
    image_update: str = "subtraction",
    pq_multiplier: str = "deepsn",
    reuse_last_image_update: bool = False,
    interir_kwargs: dict | None = None,
) -> UnfoldingNet:
    """DeepSN-Net and its Table 4 ladder on :class:`~interir.unfolding.UnfoldingNet`.

    ``conv``: ``"plain"`` | ``"xconv"`` (explainable 3x3 convs in every BasicBlock, Eqs. 15-20) | callable.
    ``image_update``: ``"subtraction"`` (Suppl. Eq. 28) | ``"resm"`` (InterIR's RESM, Eq. 12).
    ``pq_multiplier``: ``"deepsn"`` (official P/Q and multiplier updates) | ``"interir"`` (DMUM, Eq. 13, MUM, Eq. 14).
    ``interir_kwargs``: extra keyword arguments passed to InterIR's RESM/DMUM/MUM constructors.
    """
    conv3 = _conv3x3_factory(conv)
    op = partial(BasicBlock, ratio_spatial=ratio_spatial, ratio_freq=ratio_freq, conv=conv3)
    op_pq = partial(BasicBlock, ratio_spatial=pq_ratio_spatial, ratio_freq=pq_ratio_freq, conv=conv3)
    extra = dict(interir_kwargs or {})

    if image_update == "subtraction":
        make_image = partial(SubtractionImageUpdate, coefficient=coefficient)
    elif image_update == "resm":
        from interir.model import RESM

        def make_image(c: int, o: OpFactory) -> nn.Module:
            return RESM(c, o, expand=coefficient, **extra)
    else:
        raise ValueError(f"image_update must be 'subtraction' or 'resm', got {image_update!r}")

    if pq_multiplier == "deepsn":

        def make_pq(c: int, _o: OpFactory) -> nn.Module:
            return PQUpdate(c, op_pq)

        make_mult = partial(MultiplierUpdate, coefficient=coefficient)
    elif pq_multiplier == "interir":
        from interir.model import DMUM, MUM

        def make_pq(c: int, _o: OpFactory) -> nn.Module:
            return DMUM(c, op_pq, **{k: v for k, v in extra.items() if k == "weight_net"})

        def make_mult(c: int, o: OpFactory) -> nn.Module:
            return MUM(c, o, expand=coefficient)
    else:
        raise ValueError(f"pq_multiplier must be 'deepsn' or 'interir', got {pq_multiplier!r}")

    net = UnfoldingNet(width, depth, down, op, make_image, make_pq, make_mult)
    if reuse_last_image_update and depth >= 2:
        net.stages[-1].image_update = net.stages[-2].image_update
    if pq_multiplier == "deepsn":
        # The official multiplier update builds a derivative head its forward never uses (see the module doc):
        # DDP must look for parameters without gradients (pipelines.engine.loop).
        net.ddp_find_unused_parameters = True
    return net


_DEEPSN_PAPER = dict(width=48, depth=15, down=4, ratio_spatial=2, ratio_freq=4, coefficient=16)
# smoke and small: the paper's block proportions at a smaller width and depth, sized so that every comparison with
# InterIR and FDTANet keeps its paper parameter and MAC ratios within 25 % (benchmarks/preset_ratios.py).
_DEEPSN_PRESETS = {
    "smoke": dict(_DEEPSN_PAPER, width=22, depth=2),
    "small": dict(_DEEPSN_PAPER, width=26, depth=4),
    "paper": _DEEPSN_PAPER,
}
_COMMON_DEVIATIONS = (
    "All 15 Image_update modules are distinct and used; the official code builds 15 but its final call reuses "
    "the 14th (the 15th is dead weight). Same parameter count and MACs; reuse_last_image_update=True restores "
    "the official sharing.",
    "Init 1x1 conv (Eq. 11) has a bias (shared frame), the official conv_init has none (+width parameters).",
    "irfft2 gets the explicit output size, so odd grid widths work (the official call assumes even widths).",
    "Inputs whose sides are not multiples of 4 are reflect-padded and the output cropped.",
    "Batch independence holds in eval mode only: BasicBlock's BatchNorm uses batch statistics in training.",
)


# The official training recipe (pandazcx/DeepSN-Net @ 0b75731: Derain/config.yml, Derain/Runner.py, Loss/loss.py),
# for train.recipe: original. The repository has derain, denoise and deblur configurations; derain (synthetic
# streaks, like MDIR's) is taken. Every ladder variant keeps it: the ladder changes one module, not the training.
RECIPE = Recipe(
    source="pandazcx/DeepSN-Net@0b75731 Derain/config.yml, Derain/Runner.py, Loss/loss.py",
    optimizer="adamw", lr=1e-3, lr_min=1e-5, betas=(0.9, 0.95), weight_decay=1e-4, schedule="linear",
    loss="charbonnier_fft", fft_weight=0.01, grad_clip=0.01, batch=64, patch=256, iters=350_000,
    notes="MIX3 loss = Charbonnier (eps 1e-3) + 0.01 * FFT-L1; LinearLR from 1e-3 to 1e-5 over all iterations; "
          "clip_grad_norm 0.01; 2000 epochs of Rain11200 at batch 64 (about 350 k iterations); the official runs "
          "use SyncBatchNorm across GPUs (here: BatchNorm per process)",
)


def _card(name: str, summary: str, paper_rows: tuple[tuple[str, str], ...], extra: tuple[str, ...] = ()) -> ModelCard:
    return ModelCard(
        name=name,
        summary=summary,
        paper_rows=paper_rows,
        deviations=_COMMON_DEVIATIONS + extra,
        batch_independent=True,
        stride=4,
        recipe=RECIPE,
    )


@register_model(
    _card(
        "deepsn_net",
        "DeepSN-Net (TPAMI 2025): 15 unfolded Newton stages at 1/4 resolution, width 48 (Table 1/4/8 baseline)",
        (("table1", "DeepSN-Net"), ("table3", "DeepSN-Net"), ("table4", "DeepSN-Net baseline"),
         ("table5", "DeepSN-Net"), ("table8", "DeepSN-Net")),
    ),
    presets=_DEEPSN_PRESETS,
)
def deepsn_net(**kwargs) -> UnfoldingNet:
    return build_deepsn(**kwargs)


@register_model(
    _card(
        "deepsn_xconv",
        "DeepSN-Net with InterIR's explainable conv in every BasicBlock 3x3 conv (Table 4 row 2, Table 5)",
        (("table4", "baseline + explainable conv"), ("table5", "DeepSN-Net + explainable conv")),
        ("Explainable conv replaces both 3x3 convs of every BasicBlock (also in the P/Q and aux operators).",),
    ),
    presets=_DEEPSN_PRESETS,
)
def deepsn_xconv(**kwargs) -> UnfoldingNet:
    kwargs.setdefault("conv", "xconv")
    return build_deepsn(**kwargs)


@register_model(
    _card(
        "deepsn_resm",
        "DeepSN-Net with InterIR's RESM (additive, weighted residual, Eq. 12) as the image step (Table 4 row 3)",
        (("table4", "baseline + RESM"),),
        ("RESM is InterIR's module (interir.model.RESM) fed with DeepSN-Net's BasicBlock as operator.",),
    ),
    presets=_DEEPSN_PRESETS,
)
def deepsn_resm(**kwargs) -> UnfoldingNet:
    kwargs.setdefault("image_update", "resm")
    return build_deepsn(**kwargs)


@register_model(
    _card(
        "deepsn_dmum",
        "DeepSN-Net with InterIR's DMUM (Eq. 13) and MUM (Eq. 14) for the P/Q and multiplier steps (Table 4 row 4)",
        (("table4", "baseline + DMUM and MUM"),),
        (
            "DMUM gets DeepSN-Net's P/Q operator (BasicBlock, ratios 1/1), MUM the main operator (ratios 2/4); "
            "the modules themselves are InterIR's (interir.model.DMUM, MUM).",
        ),
    ),
    presets=_DEEPSN_PRESETS,
)
def deepsn_dmum(**kwargs) -> UnfoldingNet:
    kwargs.setdefault("pq_multiplier", "interir")
    return build_deepsn(**kwargs)


# deepsn_all is not in the paper (its card has no paper rows): the report adds it to Table 4 as a harness row
# (pipelines/reporting/specs.py), the control that splits interir - deepsn_net into the three modules
# (deepsn_all - deepsn_net) and the rest of the InterIR architecture (interir - deepsn_all: EPBlock vs BasicBlock,
# 1/8 vs 1/4 grid, width, depth).


@register_model(
    _card(
        "deepsn_all",
        "DeepSN-Net with all three InterIR modules (explainable conv, RESM, DMUM/MUM) and nothing else changed "
        "(Table 4 harness control)",
        (),
        (
            "Not in the paper: the three ladder switches together at DeepSN-Net's presets (conv='xconv', "
            "image_update='resm', pq_multiplier='interir'); operator (BasicBlock), 1/4 grid, width and depth stay "
            "DeepSN-Net's.",
        ),
    ),
    presets=_DEEPSN_PRESETS,
)
def deepsn_all(**kwargs) -> UnfoldingNet:
    kwargs.setdefault("conv", "xconv")
    kwargs.setdefault("image_update", "resm")
    kwargs.setdefault("pq_multiplier", "interir")
    return build_deepsn(**kwargs)

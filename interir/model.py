"""InterIR (arXiv 2511.10166): deep-unfolded ISN solver with explainable convolutions.

Built on the unfolding frame shared with DeepSN-Net (:mod:`interir.unfolding`):
pixel-unshuffle (factor 8) -> init module (Eq. 11) -> N IPBlocks, each RESM (Eq. 12) +
DMUM (Eq. 13) + MUM (Eq. 14), the last one RESM only -> 1x1 projection, pixel-shuffle,
3x3 conv = R -> restored = input + R. The learned operator ``E`` everywhere is the EPBlock
(a NAFBlock whose depthwise 3x3 is the explainable convolution of Eqs. 15-20).

The RESM/DMUM/MUM classes have the frame's factory signature ``(channels, op)`` so
DeepSN-Net variants can plug them in (Table 4 ladder). The reconstruction of Eqs. 12-14
follows the project's method notes (Sec. 8); every guess is listed in docs/interir.md and
in the model card's deviations.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from interir.blocks import ConvFactory, NAFBlock, depthwise3x3
from interir.registry import ModelCard, register_model
from interir.unfolding import OpFactory, UnfoldingNet, kron_adjoint, kron_apply, no_autocast, normalize_matrix
from interir.xconv import explainable_dw3x3, explainable_dw3x3_tau

# Depthwise 3x3 convolutions selectable by name (``conv=`` of the model); baselines pass their own
# (CoMo, ARConv) as a callable factory. "xconv_tau": the explainable conv with its straight-through
# gradient to the threshold only.
CONV_FACTORIES: dict[str, ConvFactory] = {"xconv": explainable_dw3x3, "xconv_tau": explainable_dw3x3_tau,
                                          "plain": depthwise3x3}


def resolve_conv(conv: str | ConvFactory) -> ConvFactory:
    """A conv name (``xconv``, ``xconv_tau``, ``plain``) or a callable factory -> factory."""
    if callable(conv):
        return conv
    try:
        return CONV_FACTORIES[conv]
    except KeyError:
        raise ValueError(f"unknown conv {conv!r}; known: {', '.join(sorted(CONV_FACTORIES))}") from None


class EPBlock(NAFBlock):
    """Explainable block (Sec. 3.4, Fig. 3): a NAFBlock whose depthwise 3x3 is Eqs. 15-20.

    Residual scales start at zero (NAFBlock), so every EPBlock is the identity at init.
    """

    def __init__(self, c: int, dw_conv: ConvFactory = explainable_dw3x3, dw_expand: int = 2,
                 ffn_expand: int = 2) -> None:
        super().__init__(c, dw_expand=dw_expand, ffn_expand=ffn_expand, dw_conv=dw_conv)


class Convs(nn.Module):
    """"Convs" of Eq. 12: 1x1 conv C -> eC, ReLU, 1x1 conv eC -> C (DeepSN-Net's ``derivate``)."""

    def __init__(self, channels: int, expand: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels * expand, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels * expand, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# Activations of the weight networks. "sigmoid" (weights in (0, 1)) is the default everywhere; "tanh" (weights in
# (-1, 1)) is the signed alternative for the RESM (``resm_weights``), see :class:`RESM`.
WEIGHT_ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}


class WeightNet(nn.Module):
    """The weight-learning network of Eqs. 12-13 / Suppl. Eq. 31: weights for k inputs.

    ``mode="pixel"``: 1x1 conv on the concatenated inputs (one weight per pixel and channel);
    ``mode="channel"``: the same 1x1 conv on their global average (one weight per channel and
    sample, SE-style; needs no per-pixel MACs). ``activation``: ``"sigmoid"`` (weights in (0, 1),
    the default) or ``"tanh"`` (signed weights in (-1, 1)). Returns the k weight maps.
    """

    def __init__(self, channels: int, n_inputs: int, mode: str = "channel", activation: str = "sigmoid") -> None:
        super().__init__()
        if mode not in ("pixel", "channel"):
            raise ValueError(f"unknown weight_net mode {mode!r} (pixel | channel)")
        if activation not in WEIGHT_ACTIVATIONS:
            raise ValueError(f"unknown weight activation {activation!r} ({' | '.join(WEIGHT_ACTIVATIONS)})")
        self.mode = mode
        self.activation = activation
        self.n = n_inputs
        self.conv = nn.Conv2d(channels * n_inputs, channels * n_inputs, 1)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cat = torch.cat(xs, dim=1)
        if self.mode == "channel":
            cat = F.adaptive_avg_pool2d(cat, 1)
        return WEIGHT_ACTIVATIONS[self.activation](self.conv(cat)).chunk(self.n, dim=1)


class AuxModule(nn.Module):
    """Prox of Eq. 8 inside Eqs. 12 and 14: t = E(I) + Lambda, au = Convs(t) [, sd = Convs'(t)].

    ``au`` is the proximal value Z; ``sd`` its generalised derivative (only the RESM uses it,
    so the MUM's auxiliary module builds no ``sd`` head).
    """

    def __init__(self, channels: int, op: OpFactory, expand: int = 16, with_derivative: bool = True) -> None:
        super().__init__()
        self.op = op(channels)
        self.au = Convs(channels, expand)
        self.sd = Convs(channels, expand) if with_derivative else None

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = self.op(x) + m
        return self.au(t), (self.sd(t) if self.sd is not None else None)


class RESM(nn.Module):
    """Restoration equation solver module, Eq. 12 (one ISN step, Eq. 9).

    (au, sd) = Aux(I, Lambda); h_x = P1^T P1 I P2 P2^T; h_y = P1^T D_s P2^T;
    f = E2(E1(I) + Lambda + au);
    ``form="additive"`` (InterIR, Suppl. Eq. 31): G = w1*h_x + w2*h_y + w3*f, [w] = WeightNet(h_x, h_y, f);
    ``form="subtraction"`` (DeepSN-Net, Suppl. Eq. 28): G = h_x - h_y + f;
    v = P1^T P1 G P2 P2^T + E4(E3(G) * (1 - sd)); I <- I - alpha * v, alpha learnable (init 0.01).
    P/Q products run in float32 (:func:`kron_apply`).

    ``weights`` (additive form only): the WeightNet's activation. ``"sigmoid"`` (default, the paper's "weighting
    parameters" read as gates) gives w in (0, 1), so G cannot contain the difference h_x - h_y that Eq. 28 computes
    (the gradient of 1/2 ||P1 I P2 - D_s||^2): the step's linear term P1^T P1 G P2 P2^T takes G as it is, and only
    indirect routes remain (the learned E4(E3(G)) branch; after the first DMUM, a sign carried by the learned P1 or
    P2, which flips h_y and leaves h_x unchanged; the first stage's P1, P2 of Eq. 11 carry none). ``"tanh"`` gives
    signed weights in (-1, 1) that form w1 h_x - |w2| h_y directly as well as the additive mix; zero-centred, they
    start near 0 instead of near 1/2 (the conv's bias can learn any offset) and add no parameters.
    DMUM's weights stay sigmoids in either case: they scale the two inputs of E_P / E_Q, whose learned layers can
    flip any channel's sign, so a signed weight adds nothing there.
    """

    def __init__(self, channels: int, op: OpFactory, form: str = "additive", weight_net: str = "channel",
                 expand: int = 16, step_init: float = 0.01, weights: str = "sigmoid") -> None:
        super().__init__()
        if form not in ("additive", "subtraction"):
            raise ValueError(f"unknown resm_form {form!r} (additive | subtraction)")
        self.form = form
        self.aux = AuxModule(channels, op, expand, with_derivative=True)
        self.e1, self.e2, self.e3, self.e4 = (op(channels) for _ in range(4))
        self.weights = WeightNet(channels, 3, weight_net, activation=weights) if form == "additive" else None
        self.alpha = nn.Parameter(torch.tensor(float(step_init)))

    def forward(self, x: torch.Tensor, z: torch.Tensor, m: torch.Tensor, P: torch.Tensor, Q: torch.Tensor):
        au, sd = self.aux(x, m)
        hx = kron_adjoint(kron_apply(x, P, Q), P, Q)
        hy = kron_adjoint(z, P, Q)
        f = self.e2(self.e1(x) + m + au)
        if self.weights is not None:
            w1, w2, w3 = self.weights(hx, hy, f)
            g = w1 * hx + w2 * hy + w3 * f
        else:
            g = hx - hy + f
        v = kron_adjoint(kron_apply(g, P, Q), P, Q) + self.e4(self.e3(g) * (1 - sd))
        return x - self.alpha * v


def _matmul32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    with no_autocast(a.device.type):
        return torch.matmul(a.float(), b.float())


class DMUM(nn.Module):
    """Degradation matrix update module, Eq. 13 (the P1/P2 sub-problems of Eq. 10).

    [m1, m2] = E_P(cat(wa*(I P2), wb*D_s)); P1 = nrm(m1 m2^T);
    [n1, n2] = E_Q(cat(wc*(P1 I), wd*D_s)); P2 = nrm(n1^T n2),
    with the w from weight networks and nrm the per-channel L2 normalisation (float32, eps).
    """

    def __init__(self, channels: int, op: OpFactory, weight_net: str = "channel") -> None:
        super().__init__()
        self.wp = WeightNet(channels, 2, weight_net)
        self.ep = op(2 * channels)
        self.wq = WeightNet(channels, 2, weight_net)
        self.eq = op(2 * channels)

    def forward(self, x: torch.Tensor, z: torch.Tensor, P: torch.Tensor, Q: torch.Tensor):
        xq = _matmul32(x, Q).to(x.dtype)
        wa, wb = self.wp(xq, z)
        m1, m2 = self.ep(torch.cat((wa * xq, wb * z), dim=1)).chunk(2, dim=1)
        P = normalize_matrix(_matmul32(m1, m2.transpose(-1, -2)))
        px = _matmul32(P, x).to(x.dtype)
        wc, wd = self.wq(px, z)
        n1, n2 = self.eq(torch.cat((wc * px, wd * z), dim=1)).chunk(2, dim=1)
        Q = normalize_matrix(_matmul32(n1.transpose(-1, -2), n2))
        return P, Q


class MUM(nn.Module):
    """Multiplier update module, Eq. 14: Lambda <- Lambda + E(I) - au', au' from its own Aux (rho folded in)."""

    def __init__(self, channels: int, op: OpFactory, expand: int = 16) -> None:
        super().__init__()
        self.op = op(channels)
        self.aux = AuxModule(channels, op, expand, with_derivative=False)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        au, _ = self.aux(x, m)
        return m + self.op(x) - au


# How "the N in Figure 2 is 16" is read (``ipblocks_reading``): the number of stages N counts the final RESM-only
# block (N - 1 full IPBlocks + the final RESM; the default, 26.9 M parameters at the paper preset), or N counts the
# full IPBlocks only (N IPBlocks + the final RESM = N + 1 stages; 28.6 M).
IPBLOCKS_READINGS = ("n_includes_final_resm", "n_ipblocks")


class InterIR(UnfoldingNet):
    """InterIR (Fig. 2): pixel-unshuffle, init (Eq. 11), ``depth`` = N IPBlocks (Eqs. 12-14), global residual.

    ``conv``: the depthwise 3x3 inside every EPBlock, ``"xconv"`` (Eqs. 15-20), ``"plain"``
    or a callable ``(channels) -> nn.Module``.
    ``resm_form``: ``"additive"`` (InterIR) or ``"subtraction"`` (DeepSN-Net's Eq. 28).
    ``weight_net``: ``"channel"`` or ``"pixel"`` weights in RESM/DMUM (see :class:`WeightNet`).
    ``ipblocks_reading``: how ``depth`` (the paper's N) maps to stages. ``"n_includes_final_resm"`` (default):
    ``depth`` stages, the last one RESM only (N - 1 IPBlocks + the final RESM, as DeepSN-Net counts its stages);
    ``"n_ipblocks"``: ``depth`` full IPBlocks + the final RESM (``depth + 1`` stages).
    ``resm_weights``: ``"sigmoid"`` (default) or ``"tanh"`` (signed) weights in the RESM's WeightNet only (see
    :class:`RESM`); DMUM keeps sigmoid weights.
    """

    def __init__(self, width: int = 88, depth: int = 16, down: int = 8, conv: str | ConvFactory = "xconv",
                 resm_form: str = "additive", weight_net: str = "channel", convs_expand: int = 16,
                 dw_expand: int = 2, ffn_expand: int = 2, in_channels: int = 3,
                 ipblocks_reading: str = "n_includes_final_resm", resm_weights: str = "sigmoid") -> None:
        if ipblocks_reading not in IPBLOCKS_READINGS:
            raise ValueError(f"unknown ipblocks_reading {ipblocks_reading!r} ({' | '.join(IPBLOCKS_READINGS)})")
        if resm_weights not in WEIGHT_ACTIVATIONS:
            raise ValueError(f"unknown resm_weights {resm_weights!r} ({' | '.join(WEIGHT_ACTIVATIONS)})")
        dw = resolve_conv(conv)
        op = functools.partial(EPBlock, dw_conv=dw, dw_expand=dw_expand, ffn_expand=ffn_expand)
        super().__init__(
            width=width,
            depth=depth + 1 if ipblocks_reading == "n_ipblocks" else depth,
            down=down,
            op=op,
            make_image_update=functools.partial(RESM, form=resm_form, weight_net=weight_net, expand=convs_expand,
                                                weights=resm_weights),
            make_pq_update=functools.partial(DMUM, weight_net=weight_net),
            make_multiplier_update=functools.partial(MUM, expand=convs_expand),
            in_channels=in_channels,
        )


CARD = ModelCard(
    name="interir",
    summary="InterIR: deep-unfolded ISN (RESM/DMUM/MUM) with explainable convolutions, 1/8 grid",
    paper_rows=(
        ("table1", "InterIR"),
        ("table2", "InterIR"),
        ("table3", "InterIR"),
        ("table4", "InterIR (all modules)"),
        ("table7", "explainable conv"),
        ("table8", "InterIR"),
    ),
    deviations=(
        "no public code: Eqs. 11-14 reconstructed from DeepSN-Net and the paper text (method notes Sec. 8)",
        "downsampling factor 8 and width 88 inferred from Table 8 (27 M params, 22 G MACs)",
        "weight networks give per-channel sigmoid weights from pooled features (weight_net='channel'); "
        "'pixel' is the per-pixel alternative",
        "RESM step: I <- I - alpha*v, alpha learnable, init 0.01 (sign of Eq. 9; alpha may change sign)",
        "explainable conv: threshold learned by a straight-through estimator (sigmoid((x-tau)/0.1) backward); "
        "softmax scaled by k^2 (CoMo) so uniform attention leaves W unchanged",
        "explainable conv only in the EPBlocks' depthwise 3x3 (1x1 convs are unaffected by Eqs. 16-19)",
        "MUM's auxiliary prox builds no derivative head (it would be unused)",
    ),
    batch_independent=True,
    stride=8,
    recipe_note="InterIR's code and training configuration are unpublished: the shared recipe is the reconstruction "
                "(params.yaml train.*; docs/engine.md)",
)

# smoke and small keep every comparison's parameter and MAC ratios within 25 % of the paper presets' ratios
# (benchmarks/preset_ratios.py, docs/baselines.md "Fair presets"): each family is scaled by about the same factor
# (smoke ~0.022, small ~0.074 of its paper size). convs_expand 32 (paper 16) keeps ARConv's width-independent
# overhead per depthwise channel near its paper share of the model (Table 7: +36 % parameters); with 16, width alone
# would need 40-48 at smoke (docs/baselines.md, "Fair presets").
PRESETS = {
    "paper": {"width": 88, "depth": 16, "down": 8, "convs_expand": 16},
    "small": {"width": 40, "depth": 4, "down": 8, "convs_expand": 32},
    "smoke": {"width": 32, "depth": 2, "down": 8, "convs_expand": 32},
}


@register_model(CARD, presets=PRESETS)
def interir(**kwargs) -> InterIR:
    """Registry factory: ``create_model("interir", preset, **overrides)``."""
    return InterIR(**kwargs)


# Sensitivity variants: the other reading of one open detail each, everything else as ``interir`` (same presets).
# Their cards carry no paper numbers (the paper reports neither reading separately).
def _variant_card(name: str, summary: str, deviation: str) -> ModelCard:
    return ModelCard(name=name, summary=summary, deviations=CARD.deviations + (deviation,),
                     batch_independent=CARD.batch_independent, stride=CARD.stride, recipe_note=CARD.recipe_note)


@register_model(
    _variant_card(
        "interir_ipb16",
        "InterIR with N = 16 full IPBlocks + the final RESM (17 stages; sensitivity variant of the N reading)",
        "ipblocks_reading='n_ipblocks': 'the N in Figure 2 is 16' read as 16 IPBlocks before the final RESM "
        "(28.6 M parameters at the paper preset instead of 26.9 M)",
    ),
    presets={name: {**args, "ipblocks_reading": "n_ipblocks"} for name, args in PRESETS.items()},
)
def interir_ipb16(**kwargs) -> InterIR:
    return InterIR(**kwargs)


@register_model(
    _variant_card(
        "interir_signed",
        "InterIR with signed (tanh) RESM weights, able to form h_x - h_y (sensitivity variant of the weight sign)",
        "resm_weights='tanh': the RESM's weight net gives signed weights in (-1, 1) (DMUM keeps sigmoids)",
    ),
    presets={name: {**args, "resm_weights": "tanh"} for name, args in PRESETS.items()},
)
def interir_signed(**kwargs) -> InterIR:
    return InterIR(**kwargs)


@register_model(
    _variant_card(
        "interir_xtau",
        "InterIR whose explainable convs send the threshold's surrogate gradient to the threshold only "
        "(sensitivity variant of the gradient reading)",
        "conv='xconv_tau': the straight-through surrogate of the mask reaches tau only, as CoMo's threshold update "
        "does (default: it also reaches the features)",
    ),
    presets={name: {**args, "conv": "xconv_tau"} for name, args in PRESETS.items()},
)
def interir_xtau(**kwargs) -> InterIR:
    return InterIR(**kwargs)

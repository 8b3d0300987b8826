"""InterIR network: shapes, batch independence, gradients, switches, presets, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from interir.blocks import NAFBlock, depthwise3x3
from interir.losses import L1FFTLoss
from interir.model import DMUM, MUM, RESM, EPBlock, InterIR, resolve_conv
from interir.registry import create_model, get_card, list_models
from interir.unfolding import UnfoldingNet
from interir.xconv import ExplainableConv2d, collect_masks, explainable_dw3x3


def _smoke(**kw) -> InterIR:
    torch.manual_seed(0)
    return create_model("interir", "smoke", **kw)


def _perturb_residual_scales(model: nn.Module, std: float = 0.1) -> None:
    """Zero-initialised EPBlock scales make every block the identity; perturb them so tests see the blocks."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, NAFBlock):
                m.beta.add_(torch.randn(m.beta.shape, generator=g) * std)
                m.gamma.add_(torch.randn(m.gamma.shape, generator=g) * std)


def test_registered_with_card_and_presets():
    assert "interir" in list_models()
    card = get_card("interir")
    assert card.stride == 8 and card.batch_independent
    assert ("table8", "InterIR") in card.paper_rows and ("table4", "InterIR (all modules)") in card.paper_rows
    assert card.deviations


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (17, 9)])
def test_output_shape_equals_input(size):
    model = _smoke().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_no_nan_large_input():
    model = _smoke().eval()
    _perturb_residual_scales(model)
    with torch.no_grad():
        y = model(torch.rand(1, 3, 512, 512))
    assert torch.isfinite(y).all()


def test_batch_independent():
    model = _smoke().eval()
    _perturb_residual_scales(model)
    x = torch.rand(3, 3, 40, 48)
    with torch.no_grad():
        y = model(x)
        for i in range(3):
            torch.testing.assert_close(y[i : i + 1], model(x[i : i + 1]), atol=1e-5, rtol=1e-5)


def test_gradients_reach_threshold_and_step_sizes():
    model = _smoke()
    _perturb_residual_scales(model)
    x = torch.rand(2, 3, 32, 32)
    loss = L1FFTLoss()(model(x), x * 0.5)
    assert torch.isfinite(loss)
    loss.backward()
    thresholds = [m.threshold.grad for m in model.modules() if isinstance(m, ExplainableConv2d)]
    alphas = [m.alpha.grad for m in model.modules() if isinstance(m, RESM)]
    assert thresholds and alphas
    assert all(g is not None and torch.isfinite(g).all() for g in thresholds + alphas)
    assert sum(float(g.abs().sum()) for g in thresholds) > 0
    assert all(float(g.abs()) > 0 for g in alphas)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_step_size_init():
    model = _smoke()
    alphas = [float(m.alpha.detach()) for m in model.modules() if isinstance(m, RESM)]
    assert len(alphas) == 2 and all(a == pytest.approx(0.01) for a in alphas)


def test_resm_form_switch_changes_computation():
    torch.manual_seed(0)
    add = create_model("interir", "smoke", resm_form="additive").eval()
    torch.manual_seed(0)
    sub = create_model("interir", "smoke", resm_form="subtraction").eval()
    sub.load_state_dict(add.state_dict(), strict=False)  # identical shared weights
    assert add.stages[0].image_update.weights is not None and sub.stages[0].image_update.weights is None
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ya, ys = add(x), sub(x)
    assert (ya - ys).abs().max() > 1e-6
    # and at module level, on the same inputs
    c = 8
    torch.manual_seed(1)
    ra = RESM(c, lambda ch: EPBlock(ch), form="additive")
    rs = RESM(c, lambda ch: EPBlock(ch), form="subtraction")
    rs.load_state_dict(ra.state_dict(), strict=False)
    x, z, m = torch.randn(3, 1, c, 6, 5).unbind(0)
    P, Q = torch.randn(1, c, 6, 6), torch.randn(1, c, 5, 5)
    with torch.no_grad():
        assert (ra(x, z, m, P, Q) - rs(x, z, m, P, Q)).abs().max() > 1e-4


def test_conv_switch():
    xc = _smoke()
    pl = _smoke(conv="plain")
    assert any(isinstance(m, ExplainableConv2d) for m in xc.modules())
    assert not any(isinstance(m, ExplainableConv2d) for m in pl.modules())
    seen = []

    def factory(ch: int) -> nn.Module:
        seen.append(ch)
        return depthwise3x3(ch)

    create_model("interir", "smoke", conv=factory)
    assert seen and all(c % 2 == 0 for c in seen)
    assert resolve_conv("xconv") is explainable_dw3x3
    with pytest.raises(ValueError):
        resolve_conv("nope")


def test_modules_have_frame_factory_signature():
    """RESM/DMUM/MUM plug into the shared frame with ``(channels, op)`` (DeepSN-Net ladder)."""
    net = UnfoldingNet(width=8, depth=2, down=4, op=lambda c: NAFBlock(c), make_image_update=RESM,
                       make_pq_update=DMUM, make_multiplier_update=MUM)
    x = torch.rand(1, 3, 16, 20)
    assert net(x).shape == x.shape
    for cls in (RESM, DMUM, MUM):
        assert "Eq. 1" in (cls.__doc__ or "")


def test_intermediates_and_masks_on_request():
    model = _smoke().eval()
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        out = model(x, return_intermediates=True)
        plain = model(x)
    assert len(out["iterates"]) == 2 and out["iterates"][-1].shape == x.shape
    torch.testing.assert_close(out["output"], plain)
    masks = collect_masks(model, x)
    n_conv = sum(isinstance(m, ExplainableConv2d) for m in model.modules())
    assert len(masks) == n_conv > 0
    assert all(m["mask"].shape[0] == 2 and m["attention"].shape[-2:] == (3, 3) for m in masks)
    assert all(not m.record and m.last_mask is None for m in model.modules() if isinstance(m, ExplainableConv2d))


def test_smoke_preset_size_and_training_lowers_loss():
    model = _smoke()
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    gt = (x * 0.7 + 0.15).clamp(0, 1)
    loss_fn = L1FFTLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = loss_fn(model(x), gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] * 0.9


def _paper_params() -> int:
    with torch.device("meta"):
        model = create_model("interir", "paper")
    return sum(p.numel() for p in model.parameters())


def test_paper_preset_param_band():
    assert 27e6 * 0.95 <= _paper_params() <= 27e6 * 1.05


def test_paper_preset_mac_band():
    """Meta-device FlopCounterMode: no allocation, a few seconds."""
    from pipelines.engine.profiling import macs_flopcounter

    with torch.device("meta"):
        model = create_model("interir", "paper")
        x = torch.empty(1, 3, 256, 256)
    res = macs_flopcounter(model, x)
    gmacs = (res["macs"] + res["fft"]) / 1e9
    assert 22 * 0.85 <= gmacs <= 22 * 1.15


# ----------------------------------------------------------------------------- readings the paper leaves open
PAPER_PARAMS = 26_909_949  # the `interir` paper preset before the switches existed (docs/interir.md)


def _meta(name: str, preset: str = "paper", **kw) -> InterIR:
    with torch.device("meta"):
        return create_model(name, preset, **kw)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_defaults_unchanged_at_paper_preset():
    model = _meta("interir")
    assert _n_params(model) == PAPER_PARAMS
    assert len(model.stages) == 16 and sum(s.pq_update is not None for s in model.stages) == 15
    assert all(isinstance(s.image_update.weights, nn.Module) and s.image_update.weights.activation == "sigmoid"
               for s in model.stages)


def test_ipblocks_reading_adds_one_ipblock():
    default, other = _meta("interir"), _meta("interir_ipb16")
    assert len(other.stages) == 17 and sum(s.pq_update is not None for s in other.stages) == 16
    assert other.stages[-1].pq_update is None and other.stages[-1].multiplier_update is None
    assert _n_params(other) == 28_635_199
    # exactly one full IPBlock more
    assert _n_params(other) - PAPER_PARAMS == sum(p.numel() for p in default.stages[0].parameters())
    # the switch on the plain model gives the registered variant; depth keeps meaning the paper's N
    smoke = _smoke(ipblocks_reading="n_ipblocks")
    assert len(smoke.stages) == len(_smoke().stages) + 1
    with pytest.raises(ValueError):
        _smoke(ipblocks_reading="n")


def test_signed_resm_weights_can_be_negative_and_dmum_keeps_sigmoids():
    model = _meta("interir_signed")
    assert _n_params(model) == PAPER_PARAMS  # the activation has no parameters
    assert all(s.image_update.weights.activation == "tanh" for s in model.stages)
    assert all(w.activation == "sigmoid" for s in model.stages if s.pq_update is not None
               for w in (s.pq_update.wp, s.pq_update.wq))
    c = 8
    torch.manual_seed(0)
    signed = RESM(c, lambda ch: EPBlock(ch), weights="tanh")
    gated = RESM(c, lambda ch: EPBlock(ch))
    gated.load_state_dict(signed.state_dict())
    xs = torch.randn(3, 4, c, 6, 5).unbind(0)
    ws, wg = torch.cat(signed.weights(*xs)), torch.cat(gated.weights(*xs))
    assert (ws < 0).any() and (ws.abs() < 1).all()
    assert (wg > 0).all() and (wg < 1).all()
    torch.testing.assert_close(ws, torch.tanh(torch.logit(wg)), atol=1e-5, rtol=1e-4)  # same logits, other squashing
    with pytest.raises(ValueError):
        _smoke(resm_weights="relu")

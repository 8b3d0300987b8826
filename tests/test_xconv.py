"""The explainable convolution (Eqs. 15-20): equivalences, batch independence, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from interir.blocks import NAFBlock
from interir.xconv import ExplainableConv2d, collect_masks, explainable_dw3x3

# (in, out, groups): full, grouped, depthwise
VARIANTS = [(4, 6, 1), (4, 6, 2), (8, 8, 8)]


def _reference(conv: ExplainableConv2d, x: torch.Tensor) -> torch.Tensor:
    """Eqs. 16-20 written sample by sample, with a per-sample modulated kernel."""
    kh, kw = conv.kernel_size
    outs = []
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        mask = (xb >= conv.threshold.view(1, -1, 1, 1)).float()
        att = torch.softmax(F.adaptive_avg_pool2d(mask, (kh, kw)).flatten(2), -1).view(1, -1, kh, kw) * kh * kw
        g = conv.groups
        cin_g, cout_g = conv.in_channels // g, conv.out_channels // g
        w = conv.weight.clone()
        for o in range(conv.out_channels):
            grp = o // cout_g
            w[o] = w[o] * att[0, grp * cin_g : (grp + 1) * cin_g]
        outs.append(F.conv2d(xb, w, conv.bias, conv.stride, conv.padding, conv.dilation, g))
    return torch.cat(outs)


@pytest.mark.parametrize("cin,cout,groups", VARIANTS)
def test_matches_per_sample_reference(cin, cout, groups):
    torch.manual_seed(0)
    conv = ExplainableConv2d(cin, cout, 3, padding=1, groups=groups)
    with torch.no_grad():
        conv.threshold.fill_(0.3)
    x = torch.randn(3, cin, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), _reference(conv, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cin,cout,groups", VARIANTS)
def test_uniform_attention_is_plain_conv(cin, cout, groups):
    """A constant mask (threshold above every input) gives A = 1 (k^2-scaled softmax): a plain conv."""
    torch.manual_seed(1)
    conv = ExplainableConv2d(cin, cout, 3, padding=1, groups=groups)
    x = torch.randn(2, cin, 7, 11)
    with torch.no_grad():
        conv.threshold.fill_(100.0)
        plain = F.conv2d(x, conv.weight, conv.bias, padding=1, groups=groups)
        torch.testing.assert_close(conv(x), plain, atol=1e-5, rtol=1e-5)
        conv.threshold.fill_(0.0)  # now the mask varies: must differ from the plain conv
        assert (conv(x) - plain).abs().max() > 1e-3


def test_uniform_attention_constant_input():
    """An input constant per channel gives a constant mask per channel, hence the plain conv too."""
    conv = ExplainableConv2d(3, 5, 3, padding="same")
    x = torch.tensor([-1.0, 0.5, 2.0]).view(1, 3, 1, 1).expand(2, 3, 6, 6).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cin,cout,groups", VARIANTS)
def test_batch_independent(cin, cout, groups):
    torch.manual_seed(2)
    conv = ExplainableConv2d(cin, cout, 3, padding=1, groups=groups)
    x = torch.randn(4, cin, 10, 9)
    with torch.no_grad():
        y = conv(x)
        for i in range(4):
            torch.testing.assert_close(y[i : i + 1], conv(x[i : i + 1]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("per_channel", [False, True])
def test_threshold_receives_gradient(per_channel):
    torch.manual_seed(3)
    conv = ExplainableConv2d(4, 4, 3, padding=1, groups=4, per_channel_threshold=per_channel)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    (conv(x) * torch.randn(2, 4, 8, 8)).sum().backward()
    assert conv.threshold.grad is not None and conv.threshold.shape == ((4,) if per_channel else (1,))
    assert torch.isfinite(conv.threshold.grad).all() and conv.threshold.grad.abs().min() > 0
    assert conv.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_threshold_learns():
    """A few SGD steps on the threshold alone move it (impossible without the STE)."""
    torch.manual_seed(4)
    conv = ExplainableConv2d(2, 2, 3, padding=1, groups=2)
    conv.weight.requires_grad_(False)
    conv.bias.requires_grad_(False)
    x = torch.randn(2, 2, 8, 8)
    target = torch.randn(2, 2, 8, 8)
    opt = torch.optim.SGD([conv.threshold], lr=1.0)
    start = conv.threshold.item()
    for _ in range(5):
        loss = F.mse_loss(conv(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert conv.threshold.item() != start


def test_forward_uses_hard_mask_and_weight_grad_is_autograd():
    """The STE changes only gradients; the weight gradient equals the sum over samples of A_b * dL/dW_b."""
    torch.manual_seed(5)
    conv = ExplainableConv2d(3, 3, 3, padding=1, groups=3)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        y_eval = conv(x)
    y_train = conv(x)
    torch.testing.assert_close(y_train.detach(), y_eval)
    g = torch.randn_like(y_train)
    (y_train * g).sum().backward()
    # reference: per-sample plain convs with the modulated kernel held as a leaf
    _, att = conv.attention(x)
    ref = torch.zeros_like(conv.weight)
    for b in range(2):
        wb = (conv.weight * att[b].unsqueeze(1)).detach().requires_grad_(True)
        (F.conv2d(x[b : b + 1], wb, conv.bias, padding=1, groups=3) * g[b : b + 1]).sum().backward()
        ref += wb.grad * att[b].unsqueeze(1).detach()
    torch.testing.assert_close(conv.weight.grad, ref, atol=1e-5, rtol=1e-4)


def test_stride_and_odd_sizes():
    conv = ExplainableConv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 13, 7)
    ref = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    assert conv(x).shape == ref(x).shape


def test_record_and_collect_masks():
    torch.manual_seed(6)
    block = NAFBlock(4, dw_conv=explainable_dw3x3)
    x = torch.randn(2, 4, 10, 10)
    conv = block.conv2
    assert conv.record is False
    block(x)
    assert conv.last_mask is None and conv.last_attention is None  # off by default: nothing stored
    masks = collect_masks(block, x)
    assert len(masks) == 1
    m = masks[0]
    assert m["name"] == "conv2" and m["mask"].shape == (2, 8, 10, 10) and m["attention"].shape == (2, 8, 3, 3)
    assert set(m["mask"].unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(m["attention"].sum((-1, -2)), torch.full((2, 8), 9.0))
    assert conv.record is False and conv.last_mask is None


def test_factory_is_depthwise_and_nafblock_dropin():
    conv = explainable_dw3x3(6)
    assert isinstance(conv, ExplainableConv2d) and conv.groups == 6 and conv.weight.shape == (6, 1, 3, 3)
    block = NAFBlock(3, dw_conv=explainable_dw3x3)
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(block(x), x)  # zero-initialised residual scales


def test_rejects_bad_groups():
    with pytest.raises(ValueError):
        ExplainableConv2d(3, 4, 3, groups=2)


@pytest.mark.parametrize("per_channel", [False, True])
def test_ste_gradient_is_soft_mask_gradient(per_channel):
    """Backward of the pooled mask = autograd of AdaptiveAvgPool(sigmoid((x - tau) / T)) (the documented STE)."""
    torch.manual_seed(7)
    conv = ExplainableConv2d(3, 3, 3, padding=1, groups=3, per_channel_threshold=per_channel, ste_temperature=0.3)
    with torch.no_grad():
        conv.threshold.copy_(torch.randn(conv.threshold.shape) * 0.3)
    x = torch.randn(2, 3, 7, 8, requires_grad=True)
    gp = torch.randn(2, 3, 3, 3)
    from interir.xconv import _PooledMaskSTE

    tau = conv.threshold.view(1, -1, 1, 1)
    pooled, hard = _PooledMaskSTE.apply(x, tau, (3, 3), 0.3, True)
    torch.testing.assert_close(hard, (x >= tau).float())
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d((x >= tau).float(), 3))  # forward: hard mask
    gx, gt = torch.autograd.grad((pooled * gp).sum(), (x, conv.threshold))
    soft = F.adaptive_avg_pool2d(torch.sigmoid((x - tau) / 0.3), 3)
    rx, rt = torch.autograd.grad((soft * gp).sum(), (x, conv.threshold))
    torch.testing.assert_close(gx, rx, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gt, rt, atol=1e-6, rtol=1e-5)
    # Threshold only (ste_input_grad=False): the same dL/dtau, no gradient to x through the mask.
    pooled, _ = _PooledMaskSTE.apply(x, tau, (3, 3), 0.3, False)
    gx_t, gt_t = torch.autograd.grad((pooled * gp).sum(), (x, conv.threshold), allow_unused=True)
    assert gx_t is None or torch.count_nonzero(gx_t) == 0
    torch.testing.assert_close(gt_t, rt, atol=1e-6, rtol=1e-5)


def test_threshold_only_switch_keeps_the_forward_and_the_threshold_gradient():
    """``conv="xconv_tau"``: same outputs and threshold gradients as ``xconv``; the input gradient
    differs only by the surrogate term through the mask."""
    from interir.registry import create_model

    torch.manual_seed(3)
    a = create_model("interir", "smoke")
    b = create_model("interir", "smoke", conv="xconv_tau")
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb)
    ya.square().mean().backward()
    yb.square().mean().backward()
    ta = [m.threshold.grad for m in a.modules() if isinstance(m, ExplainableConv2d)]
    tb = [m.threshold.grad for m in b.modules() if isinstance(m, ExplainableConv2d)]
    assert len(ta) == len(tb) > 0
    # Gradients upstream of the first conv differ (no surrogate term), so compare the last block's.
    torch.testing.assert_close(ta[-1], tb[-1], atol=1e-6, rtol=1e-4)
    assert all(t is not None and torch.isfinite(t).all() for t in tb)

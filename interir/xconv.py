"""InterIR's explainable convolution (paper Sec. 3.4, Eqs. 15-20).

A standard convolution computes ``Y = W * X`` (Eq. 15). The explainable convolution
modulates the shared kernel per input sample:

- Eq. 16: binary mask ``M_b = 1[X_b >= tau]`` with a learnable threshold ``tau``;
- Eq. 17: ``Mbar_b = AdaptiveAvgPool_{k x k}(M_b)`` (per sample and input channel);
- Eq. 18: ``A_b = k^2 * softmax_{k x k}(Mbar_b)``; the factor ``k^2`` (as in CoMo, which the
  method notes identify as this operator) makes a uniform attention the identity, so the
  plain convolution is a fixed point;
- Eq. 19: ``What_b = W (.) A_b`` (A broadcast over the output channels of each group);
- Eq. 20: ``Y_b = What_b * X_b``, run as ONE grouped convolution over the batch folded into
  channels (``groups = B * groups``), so every sample only ever sees its own kernel
  (batch-independent, including at inference with batch > 1).

Differences from CoMo's public code (deliberate, see docs/interir.md):

- everything goes through autograd (no in-place writes to ``weight.data``, no hand-averaged
  gradients): the gradient of ``W`` is ``sum_b A_b (.) dL/dWhat_b``;
- the threshold learns through a straight-through estimator: the forward pass uses the hard
  mask of Eq. 16, the backward pass uses the gradient of ``sigmoid((x - tau) / T)`` with the
  temperature ``T = ste_temperature``. Pooling is linear, so the surrogate is added after
  pooling: ``Mbar = pool(hard) + pool(soft) - stopgrad(pool(soft))`` (same value as the hard
  pooled mask, gradient of the soft one). By default that gradient reaches both ``tau`` and the
  input ``x``; ``ste_input_grad=False`` (model switch ``conv="xconv_tau"``) sends it to ``tau``
  only, as CoMo's threshold update does, and skips the full-size gradient map.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair


class _PooledMaskSTE(torch.autograd.Function):
    """Eqs. 16-17 on the hard mask, with the straight-through gradient of the soft mask.

    Forward: ``hard = 1[x >= tau]`` (written as floats in one pass) and
    ``AdaptiveAvgPool_k(hard)``; returns both (the mask is not differentiable). Backward: the
    gradient of ``AdaptiveAvgPool_k(sigmoid((x - tau) / T))`` w.r.t. ``tau`` and, when
    ``input_grad``, w.r.t. ``x``. One autograd node with the sigmoid evaluated only in the
    backward pass, in place, because the passes over the full feature map dominate the cost of
    a depthwise conv (``benchmarks/bench_xconv.py``).
    """

    @staticmethod
    def forward(ctx, x, tau, size, temperature, input_grad):
        hard = torch.empty_like(x)
        torch.ge(x, tau, out=hard)  # Eq. 16, straight into the float mask (no bool -> float pass)
        ctx.save_for_backward(x, tau)
        ctx.size, ctx.temperature, ctx.input_grad = size, temperature, input_grad
        ctx.mark_non_differentiable(hard)
        return F.adaptive_avg_pool2d(hard, size), hard

    @staticmethod
    def backward(ctx, grad_pooled, _grad_hard):
        x, tau = ctx.saved_tensors
        inv_t = 1.0 / ctx.temperature
        need_x = ctx.needs_input_grad[0] and ctx.input_grad
        need_tau = ctx.needs_input_grad[1]
        if not (need_x or need_tau):
            return None, None, None, None, None
        s = torch.add(tau * -inv_t, x, alpha=inv_t).sigmoid_()  # sigmoid((x - tau) / T), one pass + in place
        dims = [d for d in range(x.dim()) if tau.shape[d] == 1]
        gx = gtau = None
        if need_x:
            # d pool / d element with the 1/T of the chain rule folded in (small tensor), then
            # g * s * (1 - s) written over g.
            g = torch.ops.aten._adaptive_avg_pool2d_backward(grad_pooled * inv_t, x)
            gx = torch.ops.aten.sigmoid_backward.grad_input(g, s, grad_input=g)
            if need_tau:
                gtau = -gx.sum(dim=dims, keepdim=True)
        else:
            # tau only: pooling is linear, so dL/dtau = -sum(grad_pooled / T * pool(s (1 - s))): the
            # full-size gradient map is never formed.
            dpool = F.adaptive_avg_pool2d(s.addcmul_(s, s, value=-1.0), ctx.size)
            gtau = -(grad_pooled * dpool).sum(dim=dims, keepdim=True).mul_(inv_t)
        return gx, gtau, None, None, None


class ExplainableConv2d(nn.Module):
    """Input-adaptive convolution of Eqs. 15-20 with a learnable activation threshold.

    Constructor mirrors :class:`torch.nn.Conv2d`. ``per_channel_threshold`` gives one
    threshold per input channel instead of one per layer (CoMo has one per layer).
    ``ste_input_grad=False`` sends the straight-through gradient to the threshold only (the mask
    path is then constant for the features, as in CoMo's code; cheaper, see
    ``benchmarks/bench_xconv.py``); the default also passes it to the input.
    Set ``record = True`` to keep the last hard mask (``last_mask``: B x Cin x H x W) and
    attention (``last_attention``: B x Cin x kh x kw) for visualisation; off by default, then
    nothing is stored.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        per_channel_threshold: bool = False,
        ste_temperature: float = 0.1,
        scale_attention: bool = True,
        ste_input_grad: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        if ste_temperature <= 0:
            raise ValueError("ste_temperature must be positive")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        self.groups = groups
        kh, kw = self.kernel_size
        if isinstance(padding, str):
            if padding == "valid":
                padding = 0
            elif padding == "same":
                if self.stride != (1, 1) or (kh - 1) * self.dilation[0] % 2 or (kw - 1) * self.dilation[1] % 2:
                    raise ValueError("padding='same' needs stride 1 and an odd effective kernel")
                padding = ((kh - 1) * self.dilation[0] // 2, (kw - 1) * self.dilation[1] // 2)
            else:
                raise ValueError(f"unknown padding {padding!r}")
        self.padding = _pair(padding)
        self.ste_temperature = float(ste_temperature)
        self.ste_input_grad = bool(ste_input_grad)
        self.scale_attention = scale_attention
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.threshold = nn.Parameter(torch.zeros(in_channels if per_channel_threshold else 1))
        self.record = False
        self.last_mask: torch.Tensor | None = None
        self.last_attention: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same initialisation as :class:`torch.nn.Conv2d`; threshold 0 (CoMo)."""
        ref = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, groups=self.groups,
                        bias=self.bias is not None, device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(ref.weight)
            if self.bias is not None:
                self.bias.copy_(ref.bias)
            self.threshold.zero_()

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, bias={self.bias is not None}, "
                f"thresholds={self.threshold.numel()}, ste_temperature={self.ste_temperature}, "
                f"ste_input_grad={self.ste_input_grad}")

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. 16-18: (hard mask B x Cin x H x W as 0./1., attention B x Cin x kh x kw)."""
        kh, kw = self.kernel_size
        tau = self.threshold.view(1, -1, 1, 1).to(x.dtype)
        if torch.is_grad_enabled() and (self.threshold.requires_grad or x.requires_grad):
            # Eqs. 16-17 + STE
            pooled, hard = _PooledMaskSTE.apply(x, tau, (kh, kw), self.ste_temperature, self.ste_input_grad)
        else:
            hard = torch.empty_like(x)
            torch.ge(x, tau, out=hard)  # Eq. 16 (float 0/1)
            pooled = F.adaptive_avg_pool2d(hard, (kh, kw))  # Eq. 17
        b, c = pooled.shape[:2]
        att = torch.softmax(pooled.reshape(b, c, kh * kw), dim=-1)  # Eq. 18
        if self.scale_attention:
            att = att * (kh * kw)
        return hard, att.reshape(b, c, kh, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, cin, h, w = x.shape
        g = self.groups
        kh, kw = self.kernel_size
        hard, att = self.attention(x)
        if self.record:
            self.last_mask = hard
            self.last_attention = att.detach()
        # Eq. 19: weight[o, j] reads input channel (o // cout_g) * cin_g + j, so the attention of
        # group gi (cin_g channels) is broadcast over that group's cout_g output channels.
        cin_g, cout_g = cin // g, self.out_channels // g
        att_w = att.reshape(b, g, 1, cin_g, kh, kw)
        w_mod = self.weight.reshape(1, g, cout_g, cin_g, kh, kw) * att_w
        w_mod = w_mod.reshape(b * self.out_channels, cin_g, kh, kw)
        bias = self.bias.repeat(b) if self.bias is not None else None
        # Eq. 20: one grouped convolution, the batch folded into the channels.
        y = F.conv2d(x.reshape(1, b * cin, h, w), w_mod, bias, self.stride, self.padding, self.dilation, b * g)
        return y.reshape(b, self.out_channels, y.shape[-2], y.shape[-1])


def explainable_dw3x3(channels: int) -> nn.Module:
    """Depthwise 3x3 explainable convolution: drop-in for NAFBlock's ``dw_conv`` (EPBlock)."""
    return ExplainableConv2d(channels, channels, 3, padding=1, groups=channels, bias=True)


def explainable_dw3x3_tau(channels: int) -> nn.Module:
    """As :func:`explainable_dw3x3`, with the straight-through gradient to the threshold only."""
    return ExplainableConv2d(channels, channels, 3, padding=1, groups=channels, bias=True, ste_input_grad=False)


def explainable_modules(model: nn.Module) -> list[tuple[str, ExplainableConv2d]]:
    """All explainable convolutions of ``model`` with their qualified names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ExplainableConv2d)]


@torch.no_grad()
def collect_masks(model: nn.Module, *inputs: torch.Tensor, **kwargs) -> list[dict]:
    """Run ``model(*inputs, **kwargs)`` once with recording on; return every explainable conv's mask.

    Each entry: ``{"name", "mask" (B x Cin x H x W, 0/1), "attention" (B x Cin x kh x kw),
    "threshold"}``. Recording is switched off and the stored tensors released afterwards.
    """
    convs = explainable_modules(model)
    for _, m in convs:
        m.record = True
    try:
        model(*inputs, **kwargs)
        out = [
            {"name": n, "mask": m.last_mask, "attention": m.last_attention, "threshold": m.threshold.detach().clone()}
            for n, m in convs
        ]
    finally:
        for _, m in convs:
            m.record = False
            m.last_mask = None
            m.last_attention = None
    return out

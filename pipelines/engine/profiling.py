"""MAC counting and CPU latency of registered models (the ``profile`` stage's library).

Convention (the paper's Table 8 "FLOPs" are ptflops MACs at 256x256): **MACs of one forward
pass at 1x3xSIZExSIZE** (SIZE = 256 by default), one multiply-accumulate = 1.

Two independent counters; the headline ``gmacs`` is the first, because it counts what the model executes:

- ``gmacs`` (= ``gmacs_flopcounter``): ``torch.utils.flop_counter.FlopCounterMode`` flops / 2, plus the
  analytic FFT term (FlopCounterMode ignores FFTs without a word) and interpolation. It sees every
  operator dispatched, and runs on the ``meta`` device, so paper-size models are counted without
  allocating anything.
- ``gmacs_fvcore``, the cross-check: fvcore (``FlopCountAnalysis``; 1 "flop" = 1 MAC) with extra handles
  for what it skips silently: ``aten::_convolution_mode`` (convs written with ``padding="same"``),
  ``aten::convolution``/``aten::conv2d`` (functional convs reaching the trace un-lowered), FFTs
  (analytic, below), pixel (un)shuffle (0 MACs). fvcore counts a JIT trace, and the trace drops
  operations whose results are never used: DeepSN-Net's multiplier step computes a prox derivative it
  never uses (as the official forward does), so fvcore reads 5.3% fewer MACs there than the model runs.
  ``counter_rel_diff`` and ``counter_note`` say so in the output whenever the two differ.

FFT convention (``gmacs_fft``, counted by a dispatch-level counter and included in both totals):
a complex FFT of N points costs 5/2 * N * log2(N) real MACs (the classic 5 N log2 N flops, halved);
a real-input or real-output FFT (rfft/irfft) costs half of that; ``fft``/``fft2`` of a real tensor is
counted as complex (torch runs it as a complex-to-complex transform). Multi-
dimensional FFTs use N = product of the transformed sizes; batch dimensions multiply.
Interpolation (``grid_sample``, bilinear/nearest upsampling) is counted per output value as
fvcore does (4 MACs bilinear, 1 nearest; reported as ``gmacs_interp``, included in both totals).
Deformable convolutions (``torchvision.ops.deform_conv2d``, DCN v1/v2), which neither fvcore nor
FlopCounterMode counts, are counted analytically by both sides: the MACs of the same dense conv plus
4 MACs per bilinearly sampled input value (Cin * kh * kw samples per output pixel, the
interpolation rule); the modulation mask product is elementwise and not counted (``gmacs_deform``,
included in both totals).
Elementwise ops, normalisation (fvcore's batch/group/layer/instance-norm handles are replaced
by zero), pooling and softmax are not counted.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
import warnings
from collections import Counter
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from pipelines.common.config import Params
from pipelines.common.env import UserError

CONVENTION = (
    "MACs (1 multiply-accumulate = 1) of one forward pass at 1x3xSIZExSIZE; fvcore with extra handles, "
    "cross-checked with FlopCounterMode flops/2; FFTs analytic: 5/2*N*log2(N) real MACs per complex FFT "
    "of N points, half for rfft/irfft; interpolation 4 MACs (bilinear) or 1 (nearest) per output value; "
    "deformable convs (torchvision deform_conv2d): the dense conv's MACs + 4 per bilinearly sampled value; "
    "elementwise ops, norms, pooling, softmax not counted; "
    "latency: CPU, batch 1, torch.no_grad, median of repeats after one warm-up"
)


COUNTER_GAP_NOTE = (
    "fvcore counts a JIT trace, which drops operations whose results are never used; FlopCounterMode (the "
    "headline) counts every operation the forward pass executes"
)


# --------------------------------------------------------------------------- FFT cost (analytic)
def fft_macs(n_points: int, batch: int, real: bool) -> float:
    """Real MACs of ``batch`` FFTs of ``n_points`` points (complex: 5/2 N log2 N; real: half)."""
    if n_points <= 1:
        return 0.0
    cost = 2.5 * n_points * math.log2(n_points) * batch
    return cost / 2 if real else cost


def _prod(xs) -> int:
    out = 1
    for v in xs:
        out *= int(v)
    return out


# Interpolation MACs per output value: fvcore's defaults (its "aten::grid_sampler" and
# "aten::upsample_*" handles). FlopCounterMode has no formula for them; :class:`AnalyticCounter`
# adds the same count to its side, so the two counters agree on ARConv's grid sampling.
INTERP_MACS_PER_OUTPUT = {"grid_sampler_2d": 4, "upsample_bilinear2d": 4, "upsample_nearest2d": 1}


def deform_conv_macs(x_shape, w_shape, out_shape) -> float:
    """MACs of one deformable conv (``torchvision::deform_conv2d``): the dense conv with the same shapes
    (``out.numel() * Cin/groups * kh * kw``) plus bilinear sampling, 4 MACs per sampled value
    (``B * Cin * kh * kw * Hout * Wout`` values, :data:`INTERP_MACS_PER_OUTPUT`'s bilinear rule)."""
    b, cin = int(x_shape[0]), int(x_shape[1])
    taps = int(w_shape[2]) * int(w_shape[3])
    out_pixels = int(out_shape[2]) * int(out_shape[3])
    conv = _prod(out_shape) * int(w_shape[1]) * taps
    sampling = INTERP_MACS_PER_OUTPUT["grid_sampler_2d"] * b * cin * taps * out_pixels
    return float(conv + sampling)


class AnalyticCounter(TorchDispatchMode):
    """Counts analytic FFT MACs of ``aten._fft_r2c/_fft_c2r/_fft_c2c``, the interpolation MACs of
    :data:`INTERP_MACS_PER_OUTPUT` and deformable convs (:func:`deform_conv_macs`; works on the meta device)."""

    def __init__(self) -> None:
        super().__init__()
        self.fft = 0.0
        self.interp = 0.0
        self.deform = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        base = name.split(".")[0]
        if base in INTERP_MACS_PER_OUTPUT and isinstance(out, torch.Tensor):
            self.interp += INTERP_MACS_PER_OUTPUT[base] * out.numel()
        if base == "deform_conv2d" and isinstance(out, torch.Tensor):  # torchvision::deform_conv2d(input, weight, ...)
            self.deform += deform_conv_macs(args[0].shape, args[1].shape, out.shape)
        if base in ("_fft_r2c", "_fft_c2r", "_fft_c2c"):
            x, dims = args[0], [d % args[0].dim() for d in args[1]]
            if base == "_fft_c2r":
                last = args[3] if len(args) > 3 else kwargs["last_dim_size"]
                sizes = [x.shape[d] for d in dims[:-1]] + [int(last)]
                real_numel = x.numel() // x.shape[dims[-1]] * int(last)
            else:
                sizes = [x.shape[d] for d in dims]
                real_numel = x.numel()
            n = _prod(sizes)
            self.fft += fft_macs(n, real_numel // max(n, 1), real=base != "_fft_c2c")
        return out


# --------------------------------------------------------------------------- fvcore handles
def _jit_shape(v) -> list[int] | None:
    try:
        return v.type().sizes()
    except RuntimeError:
        return None


def _conv_handle(transposed_arg: int | None = None, transposed: bool = False):
    from fvcore.nn.jit_handles import conv_flop_count

    def handle(inputs, outputs) -> Counter:
        x, w, y = _jit_shape(inputs[0]), _jit_shape(inputs[1]), _jit_shape(outputs[0])
        tr = bool(inputs[transposed_arg].toIValue()) if transposed_arg is not None else transposed
        return Counter({"conv": conv_flop_count(x, w, y, transposed=tr)})

    return handle


def _fft_handle(kind: str, ndim: str):
    """fvcore handle for ``aten::fft_*``: kind r2c | c2r | c2c, ndim "1" | "2" | "n"."""

    def handle(inputs, outputs) -> Counter:
        x, y = _jit_shape(inputs[0]), _jit_shape(outputs[0])
        size_arg = inputs[1].toIValue() if len(inputs) > 1 else None
        dim_arg = inputs[2].toIValue() if len(inputs) > 2 else None
        rank = len(x)
        if ndim == "1":
            dims = [-1 if dim_arg is None else int(dim_arg)]
        elif dim_arg is not None:
            dims = [int(d) for d in dim_arg]
        elif ndim == "2":
            dims = [-2, -1]
        else:
            dims = list(range(-len(size_arg), 0)) if size_arg is not None else list(range(rank))
        dims = [d % rank for d in dims]
        real_side = y if kind == "c2r" else x
        if kind == "r2c" and size_arg is not None:
            sizes = list(size_arg) if isinstance(size_arg, (list, tuple)) else [size_arg]
        else:
            sizes = [real_side[d] for d in dims] if kind != "c2c" else [y[d] for d in dims]
        n = _prod(sizes)
        shape_other = _prod(real_side[d] for d in range(rank) if d not in dims)
        return Counter({"fft": round(fft_macs(n, shape_other, real=kind != "c2c"))})

    return handle


def _zero_handle(inputs, outputs) -> Counter:
    return Counter()


def _deform_conv_handle(inputs, outputs) -> Counter:
    """fvcore handle for ``torchvision::deform_conv2d(input, weight, offset, mask, bias, ...)``."""
    x, w, y = _jit_shape(inputs[0]), _jit_shape(inputs[1]), _jit_shape(outputs[0])
    return Counter({"deform_conv": round(deform_conv_macs(x, w, y))})


def fvcore_handles() -> dict[str, Any]:
    """The handles fvcore lacks (see module docstring)."""
    handles: dict[str, Any] = {
        "aten::_convolution_mode": _conv_handle(),
        "aten::conv1d": _conv_handle(),
        "aten::conv2d": _conv_handle(),
        "aten::conv3d": _conv_handle(),
        "aten::convolution": _conv_handle(transposed_arg=6),
        "aten::conv_transpose1d": _conv_handle(transposed=True),
        "aten::conv_transpose2d": _conv_handle(transposed=True),
        "torchvision::deform_conv2d": _deform_conv_handle,
        "aten::pixel_shuffle": _zero_handle,
        "aten::pixel_unshuffle": _zero_handle,
        # Pooling and norms are not counted (the convention, and FlopCounterMode has no formula for
        # them); fvcore's default handles would count them. Interpolation stays with fvcore's
        # default handles; the FlopCounterMode side gets the same per-output count from AnalyticCounter.
        "aten::batch_norm": _zero_handle,
        "aten::group_norm": _zero_handle,
        "aten::layer_norm": _zero_handle,
        "aten::instance_norm": _zero_handle,
        "aten::adaptive_avg_pool2d": _zero_handle,
        "aten::adaptive_avg_pool1d": _zero_handle,
        "aten::adaptive_avg_pool3d": _zero_handle,
    }
    kinds = {"fft": "c2c", "ifft": "c2c", "rfft": "r2c", "ihfft": "r2c", "irfft": "c2r", "hfft": "c2r"}
    for name, kind in kinds.items():
        for suffix, nd in (("", "1"), ("2", "2"), ("n", "n")):
            handles[f"aten::fft_{name}{suffix}"] = _fft_handle(kind, nd)
    return handles


# --------------------------------------------------------------------------- counting
def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_fvcore(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """fvcore MACs (with :func:`fvcore_handles`); returns total, by operator, skipped operators."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation notice
        from fvcore.nn import FlopCountAnalysis

        fa = FlopCountAnalysis(model, (x,)).set_op_handle(**fvcore_handles())
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        fa.tracer_warnings("none")
        total = fa.total()
    return {"total": total, "by_operator": dict(fa.by_operator()), "skipped": sorted(fa.unsupported_ops())}


def macs_flopcounter(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """FlopCounterMode flops / 2 plus interpolation and deformable-conv MACs, and the analytic FFT MACs (works with
    meta tensors)."""
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    ff = AnalyticCounter()
    with torch.no_grad(), fc, ff:
        model(x)
    return {"macs": fc.get_total_flops() / 2 + ff.interp + ff.deform, "fft": ff.fft, "interp": ff.interp,
            "deform": ff.deform}


def cpu_latency(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median CPU seconds of a batch-1 forward under ``torch.no_grad`` (after one warm-up)."""
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _build(name: str, preset: str, device: str = "cpu") -> nn.Module:
    from interir.registry import create_model, list_models

    if name not in list_models():
        raise UserError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    try:
        with torch.device(device):
            model = create_model(name, preset)
    except KeyError as exc:
        raise UserError(str(exc.args[0]) if exc.args else str(exc)) from None
    return model.eval()


def profile_model(name: str, preset: str = "smoke", size: int = 256, repeats: int = 3, *,
                  fvcore: bool = True, latency: bool = True) -> dict[str, Any]:
    """Profile one model. With ``fvcore=False`` and ``latency=False`` everything runs on ``meta``."""
    torch.manual_seed(0)
    real = fvcore or latency
    out: dict[str, Any] = {"model": name, "preset": preset, "size": size, "convention": CONVENTION}
    meta_model = _build(name, preset, "meta")
    out["params"] = count_params(meta_model)
    try:
        fc = macs_flopcounter(meta_model, torch.empty(1, 3, size, size, device="meta"))
        out["flopcounter_device"] = "meta"
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel or data-dependent control flow
        torch.manual_seed(0)
        fc = macs_flopcounter(_build(name, preset, "cpu"), torch.rand(1, 3, size, size))
        out["flopcounter_device"] = "cpu"
    del meta_model
    out["gmacs_fft"] = fc["fft"] / 1e9
    out["gmacs_interp"] = fc["interp"] / 1e9
    out["gmacs_deform"] = fc["deform"] / 1e9
    out["gmacs_flopcounter"] = (fc["macs"] + fc["fft"]) / 1e9
    out["gmacs"] = out["gmacs_flopcounter"]
    out["counters"] = ["flopcounter"]
    if real:
        model = _build(name, preset, "cpu")
        x = torch.rand(1, 3, size, size)
        if fvcore:
            fv = macs_fvcore(model, x)
            out["gmacs_fvcore"] = fv["total"] / 1e9
            out["gmacs_fvcore_by_operator"] = {k: v / 1e9 for k, v in sorted(fv["by_operator"].items())}
            out["fvcore_not_counted"] = fv["skipped"]
            out["counters"] = ["flopcounter", "fvcore"]
            out["counter_rel_diff"] = (out["gmacs"] - out["gmacs_fvcore"]) / max(out["gmacs"], 1e-12)
            if abs(out["counter_rel_diff"]) > 1e-6:
                out["counter_note"] = COUNTER_GAP_NOTE
        if latency:
            out["latency_s"] = cpu_latency(model, x, repeats)
            out["latency_threads"] = torch.get_num_threads()
            out["latency_repeats"] = repeats
            out["machine"] = {"platform": platform.platform(), "processor": platform.machine(),
                              "torch": torch.__version__}
    return out


def profile_all(params: Params) -> dict[str, Any]:
    """Params and MACs of every model of ``params.models`` at the pipeline preset (both counters) and at
    ``paper`` (FlopCounterMode on the meta device; fvcore too with ``profiling.paper_full``).

    No timings: the stage's output is a pure function of the code (latency is measured by
    ``benchmarks/bench_latency.py``, whose results file names the machine).
    """
    cfg = params.profiling
    result: dict[str, Any] = {}
    for name in (*params.models, *cfg.sizing_models):
        entry = {params.preset: profile_model(name, params.preset, cfg.size, latency=False)}
        if params.preset != "paper" and cfg.paper_preset:
            entry["paper"] = profile_model(name, "paper", cfg.size, fvcore=cfg.paper_full, latency=False)
        result[name] = entry
    return result

"""Explainable depthwise conv vs plain depthwise conv: forward+backward time on this CPU.

Shape: batch 8, 64 channels, 64x64, 3x3, padding 1. Goal: at most 1.5x the plain conv.
Writes benchmarks/results/xconv.json (machine, threads, medians). Usage:
    python benchmarks/bench_xconv.py [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interir.xconv import ExplainableConv2d  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def machine(threads: int) -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "note": "2-core machine; absolute times are noisy under load, ratios less so (interleaved runs)",
    }


def fwd_bwd_time(module: nn.Module, x: torch.Tensor, repeats: int, warmup: int = 3) -> list[float]:
    g = torch.randn_like(module(x))
    times = []
    for i in range(warmup + repeats):
        xi = x.detach().requires_grad_(True)
        t0 = time.perf_counter()
        (module(xi) * g).sum().backward()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        module.zero_grad(set_to_none=True)
    return times


def fwd_time(module: nn.Module, x: torch.Tensor, repeats: int, warmup: int = 3) -> list[float]:
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            module(x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = args.channels
    x = torch.randn(args.batch, c, args.size, args.size)
    plain = nn.Conv2d(c, c, 3, padding=1, groups=c)
    xconv = ExplainableConv2d(c, c, 3, padding=1, groups=c)
    xconv_tau = ExplainableConv2d(c, c, 3, padding=1, groups=c, ste_input_grad=False)  # conv="xconv_tau"
    full_plain = nn.Conv2d(c, c, 3, padding=1)
    full_xconv = ExplainableConv2d(c, c, 3, padding=1)
    res = {}
    # interleave the measurements so that load from other jobs hits both alike
    runs = {"dw_plain": [], "dw_xconv": [], "dw_xconv_tau": [], "full_plain": [], "full_xconv": []}
    fwd = {"dw_plain": [], "dw_xconv": []}
    mods = {"dw_plain": plain, "dw_xconv": xconv, "dw_xconv_tau": xconv_tau, "full_plain": full_plain,
            "full_xconv": full_xconv}
    rounds = 4
    for _ in range(rounds):
        for k, m in mods.items():
            runs[k] += fwd_bwd_time(m, x, max(1, args.repeats // rounds))
        for k in fwd:
            fwd[k] += fwd_time(mods[k], x, max(1, args.repeats // rounds))
    for k, v in runs.items():
        res[f"{k}_fwd_bwd_s"] = statistics.median(v)
    for k, v in fwd.items():
        res[f"{k}_fwd_s"] = statistics.median(v)
    res["ratio_dw_fwd_bwd"] = res["dw_xconv_fwd_bwd_s"] / res["dw_plain_fwd_bwd_s"]
    res["ratio_dw_tau_fwd_bwd"] = res["dw_xconv_tau_fwd_bwd_s"] / res["dw_plain_fwd_bwd_s"]
    res["ratio_dw_fwd"] = res["dw_xconv_fwd_s"] / res["dw_plain_fwd_s"]
    res["ratio_full_fwd_bwd"] = res["full_xconv_fwd_bwd_s"] / res["full_plain_fwd_bwd_s"]
    out = {
        "benchmark": "explainable conv (Eqs. 15-20, STE on) vs nn.Conv2d, forward+backward, median",
        "shape": {"batch": args.batch, "channels": c, "size": args.size, "kernel": 3},
        "goal": "ratio_dw_fwd_bwd <= 1.5",
        "goal_met": res["ratio_dw_fwd_bwd"] <= 1.5,
        "goal_met_threshold_only_ste": res["ratio_dw_tau_fwd_bwd"] <= 1.5,
        "repeats": len(runs["dw_plain"]),
        "machine": machine(args.threads),
        "results": res,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    from pipelines.common.files import write_text

    write_text(RESULTS / "xconv.json", json.dumps(out, indent=2) + "\n")  # atomic
    print(json.dumps(out["results"], indent=2))


if __name__ == "__main__":
    main()

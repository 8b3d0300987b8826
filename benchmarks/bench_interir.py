"""InterIR on this CPU: smoke-preset training steps/s and paper-preset inference latency at 256x256.

Writes benchmarks/results/interir.json (machine, threads, medians). Usage:
    python benchmarks/bench_interir.py [--threads 2] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_xconv import RESULTS, machine  # noqa: E402

from interir.losses import L1FFTLoss  # noqa: E402
from interir.registry import create_model  # noqa: E402


def train_steps(preset: str, batch: int, patch: int, steps: int, conv: str) -> dict:
    torch.manual_seed(0)
    model = create_model("interir", preset, conv=conv).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = L1FFTLoss()
    x = torch.rand(batch, 3, patch, patch)
    gt = (x * 0.8 + 0.1).clamp(0, 1)
    times, losses = [], []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = loss_fn(model(x), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    med = statistics.median(times)
    return {"preset": preset, "conv": conv, "batch": batch, "patch": patch, "steps": steps,
            "step_s_median": med, "steps_per_s": 1.0 / med, "loss_first": losses[0], "loss_last": losses[-1]}


def latency(preset: str, size: int, repeats: int, conv: str) -> dict:
    torch.manual_seed(0)
    model = create_model("interir", preset, conv=conv).eval()
    x = torch.rand(1, 3, size, size)
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return {"preset": preset, "conv": conv, "size": size, "batch": 1, "repeats": repeats,
            "latency_s_median": statistics.median(times), "latency_s_all": times,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {
        "benchmark": "InterIR CPU: smoke training step (batch 4, 64x64, Adam, L1+0.1 FFT-L1) and paper-preset "
                     "batch-1 inference latency (torch.no_grad, median after one warm-up)",
        "machine": machine(args.threads),
        "paper_table8_latency_s": 0.334,
        "paper_table8_note": "the paper's 0.334 s is on an unstated (GPU) device; not comparable to CPU numbers",
        "train_smoke": [train_steps("smoke", 4, 64, args.steps, c) for c in ("xconv", "plain")],
        "latency_paper": [latency("paper", args.size, args.repeats, c) for c in ("xconv", "plain")],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "interir.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("train_smoke", "latency_paper")}, indent=2))


if __name__ == "__main__":
    main()

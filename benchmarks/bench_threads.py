"""Training steps/s with 1 and 2 torch threads, per model and preset (is one thread faster on this VM?).

One step = forward, L1 + 0.1 FFT-L1 loss, backward, Adam, on a fixed random batch (no data loading), so
it isolates the threading of the model itself. Thread counts alternate over ``--rounds`` so that load
from other jobs hits both alike; each entry is the median of ``--steps`` - 1 timed steps (the first is
warm-up). Writes ``benchmarks/results/threads.json`` with the machine and load noted.

    .venv/bin/python benchmarks/bench_threads.py [--preset small] [--models interir,deepsn_net,fdtanet]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_train import machine  # noqa: E402

from interir.losses import L1FFTLoss  # noqa: E402
from interir.registry import create_model  # noqa: E402
from pipelines.common.files import write_text  # noqa: E402


def steps_per_s(name: str, preset: str, threads: int, batch: int, patch: int, steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(name, preset)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    loss_fn = L1FFTLoss()
    x, y = torch.rand(batch, 3, patch, patch), torch.rand(batch, 3, patch, patch)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--models", default="interir,deepsn_net,fdtanet")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "threads.json"))
    a = ap.parse_args()
    results = {}
    for name in a.models.split(","):
        runs: dict[int, list[float]] = {2: [], 1: []}
        for _ in range(a.rounds):
            for threads in (2, 1):
                runs[threads].append(round(steps_per_s(name, a.preset, threads, a.batch, a.patch, a.steps), 3))
        results[name] = {f"threads_{t}": {"steps_per_s": statistics.median(v), "rounds": v} for t, v in runs.items()}
        print(name, {t: statistics.median(v) for t, v in runs.items()}, "steps/s", flush=True)
    out = {"benchmark": f"training steps/s, {a.preset} preset, batch {a.batch}, {a.patch}x{a.patch}, 1 vs 2 threads",
           "machine": machine(2), "results": results}
    write_text(a.out, json.dumps(out, indent=2) + "\n")  # atomic
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

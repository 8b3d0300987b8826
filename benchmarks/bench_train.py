"""Training throughput of every registered model at the ``smoke`` preset on the CPU (steps/s).

One step = what ``pipelines.engine.loop`` does per iteration: per-step patch sampling (``PatchSampler``
on a small synthesized-like set in memory), forward, L1 + 0.1*FFT-L1 loss, backward, gradient
clipping and an Adam step, at the profile's batch and patch (params.yaml). Each model gets
warm-up steps, then ``--repeats`` timed windows of at least ``--min-seconds`` each; the median
window is reported (the machine is shared and noisy: +-20 % between repeats is normal).
``--preset small`` measures the small preset at the small profile's batch and patch.

    .venv/bin/python benchmarks/bench_train.py [--threads 2] [--preset smoke] [--models a,b]
        [--out benchmarks/results/train.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.common.config import load_params  # noqa: E402
from pipelines.common.files import write_text  # noqa: E402


def machine(threads: int) -> dict:
    """Where the numbers come from (they mean little without it)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "note": "shared 2-core machine: other engineers' jobs ran at the same time; expect +-20 % or worse",
    }


def _tiny_set(root: Path, n: int = 6, size: int = 128) -> list:
    """A few noisy/clean pairs written as PNGs, read back through the real manifest path."""
    sys.path.insert(0, str(REPO / "tests"))
    threads = torch.get_num_threads()
    from conftest import make_tiny_mdir  # the tests' manifest-compatible set

    torch.set_num_threads(threads)  # importing the tests' conftest pins torch to 1 thread

    from pipelines.data.manifest import read_manifest

    make_tiny_mdir(root, n_train=n, n_test=1, size=size)
    return read_manifest(root, "train")


def bench_model(name: str, pairs: list, batch: int, patch: int, warmup: int, repeats: int, min_s: float,
                preset: str = "smoke") -> dict:
    from interir.losses import L1FFTLoss
    from interir.registry import create_model
    from pipelines.data.sampler import PatchSampler

    torch.manual_seed(0)
    model = create_model(name, preset).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999))
    loss_fn = L1FFTLoss(0.1)
    sampler = PatchSampler(pairs, patch, seed=0)
    step = 0

    def one() -> None:
        nonlocal step
        x, y = sampler.batch(step, batch)
        loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1

    for _ in range(warmup):
        one()
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - t0 < min_s:
            one()
            n += 1
        rates.append(n / (time.perf_counter() - t0))
    return {"steps_per_s": round(statistics.median(rates), 3), "repeats": [round(r, 3) for r in rates],
            "params": sum(p.numel() for p in model.parameters())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", help="comma-separated (default: all registered)")
    ap.add_argument("--preset", default="smoke", help="model preset and params.yaml profile (batch, patch)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from interir.registry import list_models

    cfg = load_params(REPO / "params.yaml", a.preset).train
    models = a.models.split(",") if a.models else list_models()
    result = {"benchmark": f"training steps/s per {a.preset} model (CPU)", "machine": machine(a.threads),
              "setup": {"preset": a.preset, "batch": cfg.batch, "patch": cfg.patch, "loss": "L1 + 0.1*FFT-L1",
                        "optimizer": "Adam", "grad_clip": 1.0, "warmup_steps": a.warmup, "repeats": a.repeats,
                        "min_seconds_per_repeat": a.min_seconds, "statistic": "median of repeats",
                        "includes": "patch sampling (cached decoded pairs), forward, loss, backward, clip, Adam"},
              "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        pairs = _tiny_set(Path(tmp) / "mdir")
        for name in models:
            r = bench_model(name, pairs, cfg.batch, cfg.patch, a.warmup, a.repeats, a.min_seconds, a.preset)
            result["models"][name] = r
            print(f"{name:16s} {r['steps_per_s']:7.2f} steps/s  {r['repeats']}", flush=True)
    write_text(a.out, json.dumps(result, indent=2) + "\n")  # atomic: no half-written results file
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

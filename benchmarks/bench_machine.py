"""Training throughput of the whole machine: one job on every core (the former scheme) against one job per core
with one thread each (``interir-bench repro``'s scheme), side by side in one run.

For each model, at the ``small`` preset with the ``small`` profile's batch and patch, every variant runs the
same training steps (Adam, the L1+FFT loss, random batches) in fresh processes:

- ``1x<cores>``: one process with ``cores`` intra-op threads (what one ``dvc repro`` stage did);
- ``1x1``: one process, one thread (for scale);
- ``<cores>x1``: ``cores`` processes side by side, one thread each (``make repro`` now).

Machine throughput = steps finished by all processes / wall time. The variants alternate within every repeat
so that the machine's drift hits them alike; medians of ``--repeats``. Writes
``benchmarks/results/machine.json`` (the machine named in it)::

    python benchmarks/bench_machine.py                      # interir and deepsn_net, 40 steps, 3 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "machine.json"

WORKER = r"""
import sys, time, torch
sys.path.insert(0, {repo!r})
from pipelines.common import env
env.apply_defaults()
torch.set_num_threads({threads})
from interir.registry import create_model
from interir.losses import L1FFTLoss
torch.manual_seed(0)
model = create_model({model!r}, "small")
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
loss_fn = L1FFTLoss(0.1)
g = torch.Generator().manual_seed(0)
x, y = torch.rand({batch}, 3, {patch}, {patch}, generator=g), torch.rand({batch}, 3, {patch}, {patch}, generator=g)
for _ in range(2):  # warm-up (allocator, oneDNN primitives)
    opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
t0 = time.perf_counter()
for _ in range({steps}):
    opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
print(time.perf_counter() - t0)
"""


def run_variant(model: str, jobs: int, threads: int, steps: int, batch: int, patch: int) -> dict:
    """``jobs`` processes with ``threads`` threads each, started together; machine steps/s over the wall time."""
    code = WORKER.format(repo=str(REPO), threads=threads, model=model, batch=batch, patch=patch, steps=steps)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(jobs)]
    loop_s = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    wall = time.perf_counter() - t0
    slowest = max(loop_s)  # all processes run their timed loops at the same time
    return {"jobs": jobs, "threads": threads, "steps_per_s_per_job": [steps / s for s in loop_s],
            "machine_steps_per_s": jobs * steps / slowest, "wall_s_with_startup": wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["interir", "deepsn_net"])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args()
    sys.path.insert(0, str(REPO))
    from pipelines.common.config import load_params

    cfg = load_params(REPO / "params.yaml", "small").train
    cores = os.cpu_count() or 1
    variants = [(1, cores), (1, 1), (cores, 1)]
    result: dict = {"machine": {"cpu": _cpu(), "logical_cpus": cores}, "preset": "small", "batch": cfg.batch,
                    "patch": cfg.patch, "steps": a.steps, "repeats": a.repeats, "models": {}}
    for model in a.models:
        runs: dict[str, list[dict]] = {f"{j}x{t}": [] for j, t in variants}
        for _ in range(a.repeats):
            for j, t in variants:
                runs[f"{j}x{t}"].append(run_variant(model, j, t, a.steps, cfg.batch, cfg.patch))
        med = {k: statistics.median(r["machine_steps_per_s"] for r in v) for k, v in runs.items()}
        result["models"][model] = {"median_machine_steps_per_s": med,
                                   "speedup_new_vs_former": med[f"{cores}x1"] / med[f"1x{cores}"], "runs": runs}
        print(f"{model}: " + ", ".join(f"{k} {v:.2f} steps/s" for k, v in med.items())
              + f"; {cores}x1 vs 1x{cores}: {result['models'][model]['speedup_new_vs_former']:.1f}x", flush=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {a.out}")
    return 0


def _cpu() -> str:
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


if __name__ == "__main__":
    sys.exit(main())

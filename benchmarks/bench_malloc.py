"""glibc malloc tuning (``pipelines.common.env.tune_malloc``) on and off: page faults, forward time, whole evaluation.

The setting is per process and cannot be undone, so every measurement runs in a fresh child process;
the two settings alternate round by round (``INTERIR_MALLOC_TUNE=1`` / ``0``) so that the machine's
drift hits them alike. A child measures, for a smoke-preset model at 256x256 with the stage's threads:
minor page faults and milliseconds per forward pass of a ready batch (the card's ``eval_batch``), and
the whole evaluation (``evaluate_pairs`` with the stage's workers: reads, forward, metrics) of ``--n``
pairs, with its page faults per image. Medians over ``--rounds``; writes
``benchmarks/results/malloc.json`` (machine and load noted).

    .venv/bin/python benchmarks/bench_malloc.py [--model interir] [--rounds 5] [--n 48]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
SIZE = 256


def child(model_name: str, data: Path, n_forward: int) -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    from pipelines.common import env

    tuned = env.tune_malloc()
    import torch

    from interir.registry import create_model, get_card
    from pipelines.data.manifest import read_manifest
    from pipelines.engine.evaluation import eval_batch, evaluate_pairs
    from pipelines.engine.metrics import Scorer

    workers = min(2, os.cpu_count() or 1)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // (workers)))
    torch.manual_seed(0)
    model = create_model(model_name, "smoke").eval()
    card = get_card(model_name)
    batch = eval_batch(card, 0)
    x = torch.rand(batch, 3, SIZE, SIZE)
    with torch.no_grad():
        for _ in range(2):
            model(x)
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        for _ in range(n_forward):
            model(x)
        ms = (time.perf_counter() - t0) / n_forward * 1e3
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n_forward
    pairs = read_manifest(data, "test")
    scorer = Scorer()
    evaluate_pairs(model, pairs[:batch], "MDIR", card.stride, scorer=scorer, batch=batch, workers=workers)
    f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    evaluate_pairs(model, pairs, "MDIR", card.stride, scorer=scorer, batch=batch, workers=workers)
    rate = len(pairs) / (time.perf_counter() - t0)
    eval_faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / len(pairs)
    return {"tuned": tuned, "faults_per_forward": round(faults, 1), "forward_ms": round(ms, 2),
            "whole_faults_per_image": round(eval_faults, 1),
            "forward_batch": batch, "whole_images_per_s": round(rate, 2), "workers": workers,
            "threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="interir")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=48, help="test pairs of 256x256 for the whole evaluation")
    ap.add_argument("--forwards", type=int, default=6, help="timed forward passes per child")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "malloc.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)  # data folder: run one measurement, print JSON
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.model, Path(a.child), a.forwards)))
        return 0
    from bench_train import machine

    from pipelines.common.files import write_text

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_tiny_mdir

    settings = {"tuned": "1", "glibc defaults": "0"}
    runs: dict[str, list[dict]] = {k: [] for k in settings}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_tiny_mdir(Path(tmp) / "mdir", n_train=1, n_test=a.n, size=SIZE)
        for _ in range(a.rounds):
            for name, flag in settings.items():
                env = {**os.environ, "INTERIR_MALLOC_TUNE": flag}
                out = subprocess.run([sys.executable, __file__, "--model", a.model, "--forwards", str(a.forwards),
                                      "--child", str(data)], env=env, check=True, capture_output=True, text=True)
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(name, runs[name][-1], flush=True)
    keys = ("faults_per_forward", "forward_ms", "whole_faults_per_image", "whole_images_per_s")
    summary = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()}
    first = runs["tuned"][0]
    result = {"benchmark": f"glibc malloc tuning on/off, {a.model} smoke, {SIZE}x{SIZE} (CPU)",
              "machine": machine(first["threads"]),
              "setup": {"rounds": a.rounds, "pairs": a.n, "forwards_per_child": a.forwards,
                        "forward_batch": first["forward_batch"], "workers": first["workers"],
                        "statistic": "median over rounds; settings alternate round by round"},
              "median": summary, "runs": runs}
    for name, s in summary.items():
        print(f"{name:15s} {s}")
    write_text(a.out, json.dumps(result, indent=2) + "\n")
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

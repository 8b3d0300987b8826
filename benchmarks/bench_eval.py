"""Evaluation throughput at 256x256 (images/s), metrics included, and the metrics backends alone.

Whole evaluation = what ``interir-bench evaluate`` does per test pair: read both PNGs, pad to the
model's stride, forward, crop, clamp, quantise, then PSNR/SSIM on RGB and Y
(``pipelines.evaluate.evaluate_pairs``), for smoke-preset models: as the stage runs it (batches of
the card's ``eval_batch`` same-size images, PNGs read ahead by a thread) and one image at a time.
Metrics alone: ``Scorer`` with the ``fast`` backend (default) and the ``pyiqa`` reference, one image per
call as in the stage.
Medians of ``--repeats`` passes; the machine is shared, so expect +-20 % or worse.

    .venv/bin/python benchmarks/bench_eval.py [--n 24] [--threads 2] [--out benchmarks/results/eval.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_train import machine  # noqa: E402

from pipelines.imageio import write_text  # noqa: E402

SIZE = 256


def _median_rate(fn, n: int, repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t0))
    return round(statistics.median(rates), 2), [round(r, 2) for r in rates]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="test pairs of 256x256")
    ap.add_argument("--n-pyiqa", type=int, default=8, help="pairs for the (slow) pyiqa reference")
    ap.add_argument("--models", default="nafnet,fdtanet,deepsn_dmum,interir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=0,
                    help="evaluate.batch of the stage (params.yaml); 0 = each model card's eval_batch")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eval.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_tiny_mdir

    torch.set_num_threads(a.threads)  # importing the tests' conftest pins torch to 1 thread

    from interir.registry import create_model, get_card
    from pipelines.evaluate import _to_tensor, evaluate_pairs
    from pipelines.imageio import read_image
    from pipelines.metrics import Scorer
    from pipelines.pairs import read_manifest

    result = {"benchmark": f"evaluation images/s at {SIZE}x{SIZE} (CPU)", "machine": machine(a.threads),
              "setup": {"pairs": a.n, "pairs_pyiqa": a.n_pyiqa, "repeats": a.repeats, "statistic": "median",
                        "whole_evaluation_includes": "PNG reads, pad/forward/crop/clamp, quantise, 4 metrics"},
              "metrics_only": {}, "whole_evaluation": {}}
    with tempfile.TemporaryDirectory() as tmp:
        pairs = read_manifest(make_tiny_mdir(Path(tmp) / "mdir", n_train=1, n_test=a.n, size=SIZE), "test")
        tensors = [(_to_tensor(read_image(p.input)), _to_tensor(read_image(p.target))) for p in pairs]
        scorers = {"fast": Scorer(backend="fast"), "pyiqa": Scorer(backend="pyiqa")}
        for name, sc in scorers.items():
            k = a.n if name == "fast" else min(a.n_pyiqa, a.n)
            sc(*tensors[0])  # warm-up

            def run(sc=sc, k=k) -> None:
                for x, y in tensors[:k]:
                    sc(x, y)

            rate, reps = _median_rate(run, k, a.repeats)
            result["metrics_only"][name] = {"images_per_s": rate, "repeats": reps, "images": k}
            print(f"metrics {name:6s} {rate:8.2f} img/s {reps}", flush=True)
        # Why the stage scores image by image: a batch of 8 in one call (compare with "fast").
        bx, by = (torch.cat([t[i] for t in tensors[:8]]) for i in (0, 1))
        rate, reps = _median_rate(lambda: [scorers["fast"](bx, by) for _ in range(a.n // 8)], a.n // 8 * 8,
                                  a.repeats)
        result["metrics_only"]["fast_batch8"] = {"images_per_s": rate, "repeats": reps, "batch": 8}
        print(f"metrics fast, batch 8: {rate:8.2f} img/s {reps}", flush=True)
        for model_name in a.models.split(","):
            model = create_model(model_name, "smoke").eval()
            stride = get_card(model_name).stride
            mb = a.batch or get_card(model_name).eval_batch
            entry = {}
            with torch.no_grad():
                model(tensors[0][0])  # warm-up

                def fwd(model=model) -> None:
                    with torch.no_grad():
                        for x, _ in tensors:
                            model(x)

                entry["forward_only"] = dict(zip(("images_per_s", "repeats"), _median_rate(fwd, a.n, a.repeats)))
                bx = torch.cat([x for x, _ in tensors[:8]])

                def fwd_batched(model=model, bx=bx) -> None:
                    with torch.no_grad():
                        for _ in range(a.n // 8):
                            model(bx)

                entry["forward_only_batch8"] = dict(zip(("images_per_s", "repeats"),
                                                        _median_rate(fwd_batched, a.n // 8 * 8, a.repeats)))
            # (key, backend, batch, read-ahead thread): the stage's default is batch a.batch with read-ahead.
            variants = (("whole_fast", "fast", mb, True), ("whole_fast_batch1", "fast", 1, False),
                        ("whole_pyiqa", "pyiqa", mb, True))
            for key, backend, batch, prefetch in variants:
                k = a.n if backend == "fast" else min(a.n_pyiqa, a.n)
                sel = pairs[:k]
                sc = scorers[backend]
                rate, reps = _median_rate(
                    lambda sel=sel, sc=sc, m=model, s=stride, b=batch, pf=prefetch: evaluate_pairs(
                        m, sel, "MDIR", s, scorer=sc, batch=b, prefetch=pf),
                    k, a.repeats if backend == "fast" else 1)
                entry[key] = {"images_per_s": rate, "repeats": reps, "images": k, "batch": batch,
                              "read_ahead": prefetch}
            result["whole_evaluation"][model_name] = entry
            print(model_name, {k: v["images_per_s"] for k, v in entry.items()}, "img/s", flush=True)
    write_text(a.out, json.dumps(result, indent=2) + "\n")  # atomic: no half-written results file
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

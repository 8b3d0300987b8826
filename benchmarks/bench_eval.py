"""Evaluation throughput at 256x256 (images/s), metrics included, and the metrics backends alone.

Whole evaluation = what ``interir-bench evaluate`` does per test pair: read both PNGs, pad to the
model's stride, forward, crop, clamp, quantise, then PSNR/SSIM on RGB and Y
(``pipelines.engine.evaluation.evaluate_pairs``), for smoke-preset models: in chunks of the card's
``eval_batch`` pairs with each worker count of ``--workers`` (each worker reads, restores and scores
whole chunks; intra-op threads: the cores shared out among the workers), and
one image at a time on the calling thread (the stage itself uses params ``evaluate.workers``/``threads``).
The variants alternate within every repeat so that the machine's drift hits them alike.
"forward_only": the stage's intra-op threads restoring ready batches on one thread, for scale.
Metrics alone: ``Scorer`` with the ``fast`` backend (default) and the ``pyiqa`` reference, one image per
call as in the stage.
Medians of ``--repeats`` passes; the machine is shared, so expect +-20 % or worse.

    .venv/bin/python benchmarks/bench_eval.py [--n 48] [--workers 2,1] [--out benchmarks/results/eval.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would be timed too

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_train import machine  # noqa: E402

from pipelines.common.files import write_text  # noqa: E402

SIZE = 256


def _rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def _median_rate(fn, n: int, repeats: int) -> tuple[float, list[float]]:
    rates = [_rate(fn, n) for _ in range(repeats)]
    return round(statistics.median(rates), 2), [round(r, 2) for r in rates]


@torch.no_grad()
def _forward(model: torch.nn.Module, batch: torch.Tensor, times: int) -> None:
    for _ in range(times):
        model(batch)


def _summary(rates: list[float], **extra) -> dict:
    return {"images_per_s": round(statistics.median(rates), 2), "repeats": [round(r, 2) for r in rates], **extra}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="test pairs of 256x256")
    ap.add_argument("--n-pyiqa", type=int, default=4, help="pairs for the (slow) pyiqa reference")
    ap.add_argument("--models", default="interir,deepsn_dmum,nafnet,fdtanet")
    ap.add_argument("--workers", default="",
                    help="evaluation worker counts to compare, e.g. 2,1 (default: the stage's and 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=0,
                    help="evaluate.batch of the stage (params.yaml); 0 = each model card's eval_batch")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eval.json"))
    a = ap.parse_args()
    stage_workers = min(2, os.cpu_count() or 1)
    stage_threads = max(1, (os.cpu_count() or 1) // (stage_workers))
    workers = [int(w) for w in a.workers.split(",")] if a.workers else sorted({stage_workers, 1}, reverse=True)
    torch.set_num_threads(stage_threads)
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_tiny_mdir

    torch.set_num_threads(stage_threads)  # importing the tests' conftest pins torch to 1 thread

    from interir.registry import create_model, get_card
    from pipelines.data.imageio import read_image
    from pipelines.data.manifest import read_manifest
    from pipelines.engine.evaluation import _to_tensor, evaluate_pairs
    from pipelines.engine.metrics import Scorer

    result = {"benchmark": f"evaluation images/s at {SIZE}x{SIZE} (CPU)", "machine": machine(stage_threads),
              "setup": {"pairs": a.n, "pairs_pyiqa": a.n_pyiqa, "repeats": a.repeats, "statistic": "median",
                        "stage_workers": stage_workers, "stage_threads": stage_threads,
                        "workers_compared": {w: max(1, (os.cpu_count() or 1) // (w)) for w in workers},
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

            rate, reps = _median_rate(run, k, a.repeats if name == "fast" else 1)
            result["metrics_only"][name] = {"images_per_s": rate, "repeats": reps, "images": k}
            print(f"metrics {name:6s} {rate:8.2f} img/s {reps}", flush=True)
        for model_name in a.models.split(","):
            model = create_model(model_name, "smoke").eval()
            card = get_card(model_name)
            mb = a.batch or card.eval_batch
            entry = {}
            with torch.no_grad():
                model(tensors[0][0])  # warm-up
            bx = torch.cat([x for x, _ in tensors[:mb]])
            entry["forward_only"] = dict(zip(("images_per_s", "repeats"), _median_rate(
                functools.partial(_forward, model, bx, a.n // mb), a.n // mb * mb, a.repeats)))
            entry["forward_only"].update(batch=mb, threads=stage_threads)
            stage = functools.partial(evaluate_pairs, model, pairs, "MDIR", card.stride, scorer=scorers["fast"])
            # The stage's way with each worker count, alternating within every repeat; then one by one.
            whole: dict[int, list[float]] = {w: [] for w in workers}
            for _ in range(a.repeats):
                for w in workers:
                    torch.set_num_threads(max(1, (os.cpu_count() or 1) // (w)))
                    whole[w].append(_rate(functools.partial(stage, batch=mb, workers=w), a.n))
            for w, rates in whole.items():
                entry[f"whole_fast_workers{w}"] = _summary(rates, images=a.n, batch=mb, workers=w,
                                                           threads=max(1, (os.cpu_count() or 1) // (w)))
            entry["whole_fast"] = dict(entry[f"whole_fast_workers{stage_workers}"]) if stage_workers in whole else {}
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // (1)))
            one_by_one = functools.partial(stage, batch=1, workers=1)
            rates = [_rate(one_by_one, a.n) for _ in range(max(1, a.repeats // 2))]
            entry["whole_fast_batch1_workers1"] = _summary(rates, images=a.n, batch=1, workers=1,
                                                           threads=max(1, (os.cpu_count() or 1) // (1)))
            torch.set_num_threads(stage_threads)
            k = min(a.n_pyiqa, a.n)
            rate = _rate(functools.partial(evaluate_pairs, model, pairs[:k], "MDIR", card.stride,
                                           scorer=scorers["pyiqa"], batch=mb, workers=stage_workers), k)
            entry["whole_pyiqa"] = {"images_per_s": round(rate, 2), "images": k, "batch": mb}
            result["whole_evaluation"][model_name] = entry
            print(model_name, {k: v.get("images_per_s") for k, v in entry.items()}, "img/s", flush=True)
    write_text(a.out, json.dumps(result, indent=2) + "\n")  # atomic: no half-written results file
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

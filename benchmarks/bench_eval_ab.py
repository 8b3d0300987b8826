"""A/B of the evaluation loop against an earlier revision of ``pipelines/evaluate.py`` (whole evaluation, 256x256).

Loads ``pipelines/evaluate.py`` as of ``--rev`` (``git show``) beside the working copy; both score with the
working copy's metrics, so the comparison isolates the loop: how PNG reads, forward passes and scoring
share the cores. Rounds alternate the two so that load from other jobs hits them alike; each round
evaluates ``--n`` pairs of 256x256 with a smoke-preset model at the stage's batch. The working copy runs
with the stage's workers and threads (``pipelines.common.env``), the revision with its own defaults and
``--ref-threads`` intra-op threads (default: all cores but one, the rule of 74d98ce and earlier).
Writes ``benchmarks/results/eval_ab.json`` (machine and load noted).

    .venv/bin/python benchmarks/bench_eval_ab.py [--rev 74d98ce] [--model interir] [--rounds 6] [--n 48]
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
from bench_xconv_ab import load_revision  # noqa: E402

from pipelines.common.files import write_text  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="74d98ce", help="git revision of the reference evaluate.py")
    ap.add_argument("--ref-threads", type=int, default=max(1, (os.cpu_count() or 1) - 1),
                    help="intra-op threads for the revision's loop")
    ap.add_argument("--model", default="interir")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--n", type=int, default=48, help="test pairs of 256x256 per round")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eval_ab.json"))
    a = ap.parse_args()
    workers = min(2, os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // (workers))
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_tiny_mdir

    torch.set_num_threads(threads)  # importing the tests' conftest pins torch to 1 thread

    import pipelines.engine.evaluation as current
    from interir.registry import create_model, get_card
    from pipelines.data.manifest import read_manifest
    from pipelines.engine.metrics import Scorer

    card = get_card(a.model)
    batch = current.eval_batch(card, 0)
    with tempfile.TemporaryDirectory() as tmp:
        ref = load_revision(a.rev, Path(tmp), "pipelines/evaluate.py")
        pairs = read_manifest(make_tiny_mdir(Path(tmp) / "mdir", n_train=1, n_test=a.n, size=256), "test")
        model = create_model(a.model, "smoke").eval()
        scorer = Scorer()
        common = (model, pairs, "MDIR", card.stride)
        runs = {a.rev: (a.ref_threads, functools.partial(ref.evaluate_pairs, *common, scorer=scorer, batch=batch)),
                "working copy": (threads, functools.partial(current.evaluate_pairs, *common, scorer=scorer,
                                                            batch=batch, workers=workers))}
        current.evaluate_pairs(model, pairs[:batch], "MDIR", card.stride, scorer=scorer, batch=batch)  # warm-up
        rates: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(a.rounds):
            for k, (n_threads, run) in runs.items():
                torch.set_num_threads(n_threads)
                t0 = time.perf_counter()
                run()
                rates[k].append(round(a.n / (time.perf_counter() - t0), 2))
    summary = {k: {"median_images_per_s": round(statistics.median(v), 2), "rounds": v} for k, v in rates.items()}
    result = {"benchmark": f"whole evaluation images/s, {a.model} smoke, 256x256: evaluate.py at {a.rev} vs now",
              "machine": machine(threads),
              "setup": {"pairs": a.n, "rounds": a.rounds, "batch": batch, "workers": workers, "threads": threads,
                        "ref_threads": a.ref_threads,
                        "metrics": "working copy's fast backend for both"},
              "results": summary,
              "ratio_median": round(summary["working copy"]["median_images_per_s"]
                                    / summary[a.rev]["median_images_per_s"], 3)}
    for k, v in summary.items():
        print(f"{k:14s} median {v['median_images_per_s']:6.2f} images/s  {v['rounds']}")
    print(f"ratio {result['ratio_median']}")
    write_text(a.out, json.dumps(result, indent=2) + "\n")
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

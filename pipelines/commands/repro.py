"""``interir-bench repro``: ``dvc repro`` with the independent stages run side by side (``make repro`` calls it).

``dvc repro`` runs stages one after another. DVC's documented way to run independent branches of a
pipeline in parallel is to start several ``dvc repro -s TARGET`` in the same workspace: DVC locks the
repository only while it reads and writes ``dvc.lock``, not while a stage's command runs. This command
does exactly that, and nothing DVC would not do itself:

1. ``dvc repro synthesize`` (the set every other stage reads; it uses all cores by itself);
2. ``JOBS`` workers, each taking one (model, seed) chain ``dvc repro -s train@M-S evaluate@M-S``, or the
   ``score_inputs`` or ``profile`` stage; up-to-date stages are skipped by DVC as usual, the cache works per
   stage. Longest first, so that no long job starts last while the other workers idle: ``profile``, then the
   chains by the model's measured CPU forward time at the profile's preset (``benchmarks/results/
   latency_cpu.json``; a model it lacks counts as the slowest). The order changes only the wall time;
3. ``dvc repro`` for the rest (the report) and as the final check that every stage is up to date.

Each job runs its stages with ``train.threads`` / ``evaluate.threads`` intra-op threads (params, so the
float sums, hence the results, do not depend on the machine); ``JOBS`` defaults to cores // threads
(the measured rule: docs/engine.md, "Using the whole machine"). The start-up window in which two DVC
processes both want the repository lock (``Unable to acquire lock``, treeverse/dvc#10465) is handled by
retrying that DVC call after a short random wait (:mod:`pipelines.common.dvcrun`, shared with ``interir-bench
cluster``, which sends the same chains to SLURM). The MLflow store is created once before the jobs start
(two processes creating a SQLite store at once race on its schema).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from pipelines.common import entry, paths
from pipelines.common.config import load_params
from pipelines.common.dvcrun import build_page, chains, dvc
from pipelines.common.env import UserError

LOG_DIR = Path(".dvc/tmp/repro-logs")
LATENCY = Path("benchmarks/results/latency_cpu.json")


def longest_first(todo: list[list[str]], profile: str, latency: Path = LATENCY) -> list[list[str]]:
    """The jobs ordered by expected duration: ``profile`` first, then the chains by their model's measured forward
    time at ``profile`` (unknown models first), ``score_inputs`` (short) last; ties keep their order."""
    try:
        seconds = json.loads(latency.read_text())["seconds"]
    except (OSError, ValueError, KeyError):
        seconds = {}

    def cost(targets: list[str]) -> float:
        stage, _, name = targets[0].partition("@")
        if not name:
            return math.inf if stage == "profile" else 0.0
        model = name.rsplit("-", 1)[0]
        return float(seconds.get(model, {}).get(profile, 1e6))

    return sorted(todo, key=cost, reverse=True)


def default_jobs(threads: int) -> int:
    """Jobs that fit the machine: one per ``threads`` cores (at least one)."""
    return max(1, (os.cpu_count() or 1) // max(1, threads))


def run(jobs: int, params_path: Path, log_dir: Path = LOG_DIR, echo=lambda m: print(m, flush=True)) -> float:
    """Reproduce the pipeline with ``jobs`` parallel workers; returns the wall time in seconds."""
    params = load_params(params_path)
    t0 = time.perf_counter()
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    from pipelines.common import tracking

    tracking.ensure_store()
    echo(f"repro: synthesize, then {jobs} job(s) x {params.train.threads} thread(s) over "
         f"{len(params.models) * len(params.seeds)} train/evaluate chains and profile, then the report")
    dvc(["repro", "synthesize"], log_dir / "synthesize.log")
    todo = longest_first(chains(list(params.models), list(params.seeds)), params.profile)

    def job(targets: list[str]) -> str:
        start = time.perf_counter()
        dvc(["repro", "-s", *targets], log_dir / f"{targets[0].replace('@', '_')}.log")
        return f"{' -> '.join(targets)} ({time.perf_counter() - start:.0f} s)"

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(job, t) for t in todo]
        done_count = 0
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                if fut.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise fut.exception()  # type: ignore[misc]
                done_count += 1
                echo(f"  [{done_count}/{len(todo)}] {fut.result()}")
    dvc(["repro"], log_dir / "final.log")
    build_page(params_path)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = entry.ArgumentParser(prog="interir-bench repro", description=__doc__.splitlines()[0])
    p.add_argument("-j", "--jobs", type=int, default=None,
                   help="parallel jobs (default: $INTERIR_JOBS, else cores // train.threads)")
    p.add_argument("--params", default=str(paths.PARAMS))
    a = p.parse_args(argv)
    params = load_params(a.params)
    jobs = a.jobs if a.jobs is not None else int(os.environ.get("INTERIR_JOBS", "0") or 0)
    if jobs < 0:
        raise UserError(f"--jobs must be >= 1 (0 = automatic), got {jobs}")
    jobs = jobs or default_jobs(params.train.threads)
    seconds = run(jobs, Path(a.params))
    print(f"repro: done in {seconds:.0f} s (logs: {LOG_DIR})")
    return 0


if __name__ == "__main__":
    from pipelines.common import entry

    sys.exit(entry.run("repro", main))

"""Process-wide defaults: offline and telemetry switches, headless plotting, thread counts.

Set by the project itself (not only in CI) so that every entry point behaves the same on
a machine without network access. Existing environment values win.
"""

from __future__ import annotations

import os

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "MPLBACKEND": "Agg",
    "TQDM_MININTERVAL": "1",
    # OpenMP threads that spin while waiting make torch 10-30x slower on a busy 2-core machine
    # (measured: interir smoke step 0.15 s alone, 4.5 s beside a second torch process; 0.5 s with
    # PASSIVE). Read when libgomp loads, so it must be set before torch is imported.
    "OMP_WAIT_POLICY": "PASSIVE",
}


class UserError(Exception):
    """Bad input from the user (a file, a flag, a params key): reported as one line."""


def apply_defaults() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def tracking_uri() -> str:
    """MLflow tracking URI: $MLFLOW_TRACKING_URI, else the embedded SQLite file."""
    return os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")


def torch_threads() -> int:
    """Intra-op threads for a stage: ``$OMP_NUM_THREADS`` when set (torchrun sets 1 per process), else all cores.

    Set explicitly rather than left to the process default, so that two runs of the same stage
    (a resumed one and an uninterrupted one) use the same reduction order and agree bit for bit.
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else max(1, os.cpu_count() or 1)


def eval_workers(configured: int = 0) -> int:
    """Evaluation workers, threads that each read, restore and score whole chunks of test pairs
    (pipelines/evaluate.py): ``configured`` (params ``evaluate.workers``) when positive, else 2 when
    there are 2 or more cores. On this 2-core machine two workers with one intra-op thread each beat
    one forward thread beside a reading/scoring thread for every smoke model (interir 41.0 -> 48.9
    images/s, fdtanet 3.6 -> 7.0; ``benchmarks/bench_eval.py``, docs/engine.md §7).
    """
    return configured if configured > 0 else min(2, max(1, os.cpu_count() or 1))


def eval_threads(workers: int = 1) -> int:
    """Intra-op threads of each evaluation worker: ``$OMP_NUM_THREADS`` when set, else the cores
    shared out among the ``workers`` (at least one each)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else max(1, (os.cpu_count() or 1) // max(1, workers))

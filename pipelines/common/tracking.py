"""MLflow conventions of the harness.

One experiment per profile (``interir-bench/<profile>``) and one run per (model, profile,
seed), named ``<model>/<profile>/s<seed>``. Model variants (``deepsn_xconv``,
``interir_como``, ...) are registered models of their own, so a run is also one per
variant. The train stage creates the run (params, loss curve, resolved config, final
checkpoint); the evaluate stage logs its metrics into the same run (found through the run
id stored in the checkpoint), so the MLflow compare view shows one row per paper row.
Tags: ``paper.table`` and ``paper.row`` (from the model card's ``paper_rows``), ``role``
(``reproduced``), ``model``, ``profile``, ``seed``, ``data.version``. Any exception inside
:func:`tracked_run` marks the run FAILED (KILLED for Ctrl-C); a SIGKILLed run stays
RUNNING until the resumed process reopens it.

The tracking URI is ``$MLFLOW_TRACKING_URI`` (a team's shared ``mlflow server``) or the
SQLite file ``mlflow.db`` in the working directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from interir.registry import get_card
from pipelines.common import env


def experiment_name(profile: str) -> str:
    return f"interir-bench/{profile}"


def run_name(model: str, profile: str, seed: int) -> str:
    """Display name of the (model, profile, seed) run."""
    return f"{model}/{profile}/s{seed}"


def metric_key(set_name: str, metric: str, combination: str = "") -> str:
    """The MLflow key of a metric on a test set, optionally one MDIR combination: ``MDIR/haze_rain_noise/psnr``.

    MLflow keys cannot hold ``+``, so combinations are written with ``_``; the paper runs use the same keys.
    """
    return "/".join(part for part in (set_name, combination.replace("+", "_"), metric) if part)


def setup(profile: str) -> Any:
    """Import mlflow lazily (1-2 s), point it at the tracking URI, select the experiment."""
    env.apply_defaults()
    import mlflow

    mlflow.set_tracking_uri(env.tracking_uri())
    mlflow.set_experiment(experiment_name(profile))
    return mlflow


def paper_tags(model: str) -> dict[str, str]:
    """Where the paper reports a registered model, from its card's ``paper_rows``.

    ``paper.table`` lists the tables (``table4,table5``), ``paper.row`` the rows
    (``table4:baseline + explainable conv; ...``); both empty for a model outside the paper.
    """
    rows = get_card(model).paper_rows
    return {"paper.table": ",".join(table for table, _ in rows),
            "paper.row": "; ".join(f"{table}:{label}" for table, label in rows)}


def run_tags(model: str, profile: str, seed: int, data_version: str, role: str = "reproduced") -> dict[str, str]:
    """The tags that line a run up with the paper's tables in the MLflow compare view."""
    return {
        "role": role,
        "model": model,
        "profile": profile,
        "seed": str(seed),
        "data.version": data_version,
        **paper_tags(model),
    }


def existing_run(mlflow: Any, run_id: str | None) -> str | None:
    """``run_id`` if the tracking store still has it, else None (DB replaced, run deleted)."""
    if not run_id:
        return None
    try:
        run = mlflow.get_run(run_id)
    except Exception:
        return None
    return run_id if run.info.lifecycle_stage == "active" else None


@contextlib.contextmanager
def tracked_run(profile: str, name: str, tags: dict[str, str], run_id: str | None = None) -> Iterator[Any]:
    """Start (or reopen, with ``run_id``) a run; an exception marks it FAILED and re-raises.

    The body may call ``mlflow.end_run(status=...)`` itself (e.g. KILLED for a deliberate
    stop); the context then leaves the run alone.
    """
    mlflow = setup(profile)
    run_id = existing_run(mlflow, run_id)
    run = mlflow.start_run(run_id=run_id, run_name=None if run_id else name, tags=tags)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        if mlflow.active_run() is not None:
            mlflow.end_run(status="FINISHED")

"""MLflow conventions of the harness.

One experiment per profile (``interir-bench/<profile>``); one run per (stage, model,
profile, seed), named ``<stage>:<model>:s<seed>`` and tagged so that the MLflow compare
view lines up with the paper's tables (``paper.table``, ``paper.row``, ``role``,
``model``, ``profile``, ``seed``, ``data.version``). Paper numbers are logged as runs
with ``role=paper`` by the report stage, with the same metric keys.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from pipelines import env
from pipelines.paper_map import rows_for, tables_for


def experiment_name(profile: str) -> str:
    return f"interir-bench/{profile}"


def setup(profile: str):
    """Import mlflow lazily (1-2 s), point it at the tracking URI, select the experiment."""
    env.apply_defaults()
    import mlflow

    mlflow.set_tracking_uri(env.tracking_uri())
    mlflow.set_experiment(experiment_name(profile))
    return mlflow


def run_tags(stage: str, model: str, profile: str, seed: int, data_version: str, role: str = "reproduced") -> dict:
    return {
        "stage": stage,
        "role": role,
        "model": model,
        "profile": profile,
        "seed": str(seed),
        "data.version": data_version,
        "paper.table": tables_for(model),
        "paper.row": rows_for(model),
    }


@contextlib.contextmanager
def tracked_run(
    profile: str, name: str, tags: dict[str, str], run_id: str | None = None
) -> Iterator[Any]:
    """Start (or resume, with ``run_id``) a run; any exception marks it FAILED and re-raises."""
    mlflow = setup(profile)
    if run_id is not None:
        try:
            mlflow.get_run(run_id)
        except Exception:  # the run was deleted or the DB replaced: start a new one
            run_id = None
    run = mlflow.start_run(run_id=run_id, run_name=None if run_id else name, tags=tags)
    try:
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def flat_params(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested dict into MLflow params (few, flat, stringified)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


def default_mlflow_dir() -> str:
    return os.path.abspath(os.getcwd())

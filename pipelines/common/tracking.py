"""MLflow conventions of the harness: where the store is, experiments, runs and their tags.

**Store.** ``$MLFLOW_TRACKING_URI`` (a team's ``mlflow server``), else the project's own SQLite file
``<project>/mlflow.db`` with artifacts in ``<project>/mlruns``, both by absolute path. ``<project>`` is
``$DVC_ROOT`` when DVC runs the stage (DVC sets it to the parent repository even inside the temporary
workspace of a queued experiment, which it deletes afterwards), else the working directory. Creating a
new SQLite store migrates its schema; two processes doing that at once fail, so every process creates
or opens the store under an exclusive file lock (``mlflow.db.lock``).

**Experiments and runs.** One experiment per profile (``interir-bench/<profile>``, created with an
absolute artifact location and tagged as a model-development experiment so the UI opens on its runs),
one run per (model, profile, seed) named ``<model>/<profile>/s<seed>``. The train stage creates the run;
the evaluate stage logs into the same run, found by its ``run.key`` tag (a hash of everything that
determines the checkpoint), so the compare view shows one row per paper row. Tags: ``role``
(``reproduced``), ``model``, ``profile``, ``seed``, ``data.version``, ``params.hash``, ``run.key``,
``paper.table``/``paper.row`` (from the model card's ``paper_rows``), ``mlflow.source.git.commit``
(+ ``git.dirty``) and, in a DVC experiment, ``dvc.exp_name``. Any exception inside :func:`tracked_run`
marks the run FAILED (KILLED for Ctrl-C); a SIGKILLed run stays RUNNING until the resumed process
reopens it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from interir.registry import get_card
from pipelines.common import env

STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlruns"
# MLflow 3's UI opens an experiment on the GenAI overview unless it is tagged as model development.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def project_root() -> Path:
    """``$DVC_ROOT`` (the parent repository, also in a queued experiment's temporary workspace), else cwd."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the project's SQLite store by absolute path."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / STORE_FILE}"


def _local_store(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Exclusive lock around creating/opening a local SQLite store (no-op for a tracking server)."""
    db = _local_store(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_store() -> None:
    """Create (and migrate) the tracking store now, under the lock: call before starting parallel jobs."""
    env.apply_defaults()
    import mlflow

    uri = tracking_uri()
    with _store_lock(uri):
        mlflow.set_tracking_uri(uri)
        mlflow.search_experiments(max_results=1)


def _artifact_location(uri: str, name: str) -> str | None:
    """Absolute ``file:`` artifact root for a local store; a tracking server chooses its own."""
    if _local_store(uri) is None:
        return None
    return (project_root() / ARTIFACT_DIR / name.replace("/", "_")).as_uri()


CODE_ROOT = Path(__file__).resolve().parents[2]  # the checkout whose code runs


def git_tags(root: Path = CODE_ROOT) -> dict[str, str]:
    """``mlflow.source.git.commit`` and ``git.dirty`` of the running code (in a DVC queue: the experiment's
    baseline commit, which DVC names in ``$DVC_EXP_BASELINE_REV``; the experiment's own changes are params)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = os.environ.get("DVC_EXP_BASELINE_REV") or git("rev-parse", "HEAD")
    if not commit:
        return {}
    tags = {"mlflow.source.git.commit": commit}
    if "DVC_EXP_BASELINE_REV" not in os.environ:
        tags["git.dirty"] = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def params_hash(resolved: dict[str, Any]) -> str:
    """Short hash of the resolved params (what the run was configured with)."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_key(key: dict[str, Any]) -> str:
    """Short hash of a checkpoint's resume key: the train run and the evaluate stage meet through it."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    """Import mlflow lazily (1-2 s), point it at the store, create or select the profile's experiment."""
    env.apply_defaults()
    import mlflow

    uri = tracking_uri()
    name = experiment_name(profile)
    with _store_lock(uri):
        mlflow.set_tracking_uri(uri)
        exp = mlflow.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else mlflow.create_experiment(
            name, artifact_location=_artifact_location(uri, name), tags=EXPERIMENT_KIND)
        mlflow.set_experiment(experiment_id=exp_id)
    return mlflow


def find_run(mlflow: Any, profile: str, key: str) -> str | None:
    """The newest run of this profile tagged ``run.key = key`` (the training run of a checkpoint), or None."""
    exp = mlflow.get_experiment_by_name(experiment_name(profile))
    if exp is None:
        return None
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`run.key` = '{key}'",
                              order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    return runs[0].info.run_id if runs else None


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
def tracked_run(profile: str, name: str, tags: dict[str, str], run_id: str | None = None,
                source: str = "") -> Iterator[Any]:
    """Start (or reopen, with ``run_id``) a run; an exception marks it FAILED and re-raises.

    A new run also gets the git tags (:func:`git_tags`) and ``mlflow.source.name`` = ``source`` (the stage
    module; MLflow would record the console script's path in the virtual environment). The body may call
    ``mlflow.end_run(status=...)`` itself (e.g. KILLED for a deliberate stop); the context then leaves
    the run alone.
    """
    mlflow = setup(profile)
    run_id = existing_run(mlflow, run_id)
    if run_id is None:
        tags = {**git_tags(), **({"mlflow.source.name": source, "mlflow.source.type": "LOCAL"} if source else {}),
                **tags}
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

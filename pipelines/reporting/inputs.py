"""Inputs of the report: reference tables, per-image results, profile.json, MLflow runs, provenance.

Also a model's mean and a paired difference of two models with their intervals (the bootstrap over
independent units and seeds lives in :mod:`pipelines.reporting.stats`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.common.paths import INPUT_RUN, PER_IMAGE, TRAIN_CURVE, run_name
from pipelines.reporting import specs
from pipelines.reporting.stats import NAN_EST, Estimate, bootstrap, score_matrix, unit_kind, units_of

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def reference_dir() -> Traversable:
    """The folder of the reference CSVs (packaged with pipelines.reporting; the only home of the paper's numbers)."""
    return resources.files("pipelines.reporting.reference")


def reference_table(name: str) -> pd.DataFrame:
    """A paper table (reference CSV stem ``name``): numbers quoted from the paper."""
    with reference_dir().joinpath(f"{name}.csv").open() as fh:
        return pd.read_csv(fh)


def reference_hash() -> str:
    """Short hash of every table spec's reference CSV and the claims (identifies the quoted numbers;
    used for idempotent paper runs)."""
    h = hashlib.sha256()
    for name in (*(s.csv for s in specs.TABLES), "claims"):
        h.update(reference_dir().joinpath(f"{name}.csv").read_bytes())
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------- results


def load_per_image(eval_dir: Path, models: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """All ``per_image.csv`` of the (model, seed) runs that exist, with ``model`` and ``seed`` columns, and the
    degraded inputs' own scores (the score_inputs stage) as model ``input``, seed 0."""
    frames = []
    files = [(m, s, Path(eval_dir) / run_name(m, s) / PER_IMAGE) for m in models for s in seeds]
    files.append((INPUT_RUN, 0, Path(eval_dir) / INPUT_RUN / PER_IMAGE))
    for m, s, f in files:
        if f.is_file():
            df = pd.read_csv(f, keep_default_na=False, na_values=[""])
            df["combination"] = df["combination"].fillna("")
            df["set"] = df["set"].astype(str)
            df["model"], df["seed"] = m, s
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["image", "set", "combination", "unit", "haze", "rain", "noise", "psnr", "ssim", "psnr_y", "ssim_y",
                 "model", "seed"])


def select(per_image: pd.DataFrame, model: str, set_name: str, combination: str = "") -> pd.DataFrame:
    """Rows of one model on one set (case-insensitive), optionally one MDIR combination."""
    if per_image.empty:
        return per_image
    sel = per_image[(per_image["model"] == model) & (per_image["set"].str.lower() == set_name.lower())]
    if combination and combination != "average":
        sel = sel[sel["combination"] == combination]
    return sel


def estimate(per_image: pd.DataFrame, model: str, set_name: str, metric: str, n_boot: int, ci: float,
             combination: str = "") -> Estimate:
    """Mean of ``metric`` with its interval over the set's independent units (NaN without such rows)."""
    sel = select(per_image, model, set_name, combination)
    if sel.empty:
        return NAN_EST
    return bootstrap([score_matrix(sel, metric)], [1.0], units_of(sel), n_boot, ci, ci_unit=unit_kind(set_name))


def difference(per_image: pd.DataFrame, model_a: str, model_b: str, set_name: str, metric: str, n_boot: int,
               ci: float, combination: str = "") -> Estimate:
    """mean(A) - mean(B) on the test images both were scored on; the interval resamples their units, paired."""
    a_sel = select(per_image, model_a, set_name, combination)
    b_sel = select(per_image, model_b, set_name, combination)
    if a_sel.empty or b_sel.empty:
        return NAN_EST
    return bootstrap([score_matrix(a_sel, metric), score_matrix(b_sel, metric)], [1.0, -1.0],
                     units_of(pd.concat([a_sel, b_sel])), n_boot, ci, ci_unit=unit_kind(set_name))


def load_profile(path: Path, latency_path: Path | None = None) -> tuple[dict[str, Any], str]:
    """``results/profile.json`` (params, MACs) with the measured CPU latencies merged in as ``latency_s``
    per preset, and the machine they were measured on ("" without a latency file).

    Latency comes from ``benchmarks/bench_latency.py``'s committed results file, not from the pipeline:
    timings differ on every run, and the report's outputs must not.
    """
    path = Path(path)
    profile = json.loads(path.read_text()) if path.is_file() else {}
    if latency_path is None or not Path(latency_path).is_file():
        return profile, ""
    latency = json.loads(Path(latency_path).read_text())
    for model, by_preset in latency.get("seconds", {}).items():
        for preset, seconds in by_preset.items():
            if preset in profile.get(model, {}):
                profile[model][preset]["latency_s"] = float(seconds)
    m = latency.get("machine", {})
    machine = f"{m.get('cpu', '?')}, {latency.get('protocol', '').split(', ')[-1]}" if m else ""
    return profile, machine


def training_curves(train_dir: Path, models: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """``curve.csv`` of every (model, seed) run as a long DataFrame (label, step, value): the training loss."""
    frames = []
    for m in models:
        for s in seeds:
            f = Path(train_dir) / run_name(m, s) / TRAIN_CURVE
            if f.is_file():
                c = pd.read_csv(f)
                frames.append(pd.DataFrame({"label": f"{m} s{s}", "step": c["step"], "value": c["loss"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label", "step", "value"])


def profile_value(profile: dict[str, Any], model: str, preset: str, key: str) -> float:
    try:
        return float(profile[model][preset][key])
    except (KeyError, TypeError, ValueError):
        return float("nan")


# --------------------------------------------------------------------------- MLflow


def mlflow_runs(profile: str) -> pd.DataFrame:
    """Every run of the profile's experiment as a DataFrame (empty when there is none)."""
    from pipelines.common import tracking

    mlflow = tracking.setup(profile)
    exp = mlflow.get_experiment_by_name(tracking.experiment_name(profile))
    if exp is None:
        return pd.DataFrame()
    runs = mlflow.search_runs(experiment_ids=[exp.experiment_id], output_format="pandas")
    return runs if isinstance(runs, pd.DataFrame) else pd.DataFrame()


def latest_runs(runs: pd.DataFrame, models: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """The newest reproduced run per (model, seed) among ``models`` x ``seeds``.

    One MLflow run per (model, profile, seed) holds both the training (``train/loss``) and
    the evaluate stage's metrics (:mod:`pipelines.common.tracking`).
    """
    need = {"tags.model", "tags.seed", "tags.role"}
    if runs.empty or not need <= set(runs.columns):
        return pd.DataFrame(columns=["run_id", "tags.model", "tags.seed", "status"])
    sel = runs[(runs["tags.role"] == "reproduced") & runs["tags.model"].isin(list(models))
               & runs["tags.seed"].isin([str(s) for s in seeds])]
    sel = sel.sort_values("start_time", ascending=False)
    return sel.drop_duplicates(["tags.model", "tags.seed"]).reset_index(drop=True)


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_commit() -> str:
    sha = _cmd(["git", "rev-parse", "--short=12", "HEAD"])
    if not sha:
        return "unknown"
    dirty = _cmd(["git", "status", "--porcelain", "--untracked-files=no"])
    return sha + (" (uncommitted changes)" if dirty else "")


def dvc_data_hash(lock: Path = Path("dvc.lock"), out: str = "datasets/mdir") -> str:
    """md5 of the synthesized set as recorded by DVC in ``dvc.lock`` ("" when not locked)."""
    if not lock.is_file():
        return ""
    import yaml

    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for o in stages.get("synthesize", {}).get("outs", []):
            if o.get("path") == out:
                return str(o.get("md5", ""))
    except (yaml.YAMLError, AttributeError):
        return ""
    return ""


def hardware() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
                 .split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{cpu or platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs{mem}; " \
           f"{platform.platform()}"


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "pandas", "scikit-image", "scikit-learn", "matplotlib", "seaborn", "mlflow",
                "dvc", "fvcore"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out

"""``interir-bench export-run OUT [--wall-s S]``: keep a finished run's verdicts in git (``docs/small-run/``).

Copies what a reader of the run needs from the pipeline's outputs: the report's tables (the paper's tables and
ours, the claims ledger, the claim trajectories, the sensitivity table, the paper-consistency checks), its
figures of claims over budget and training, ``runs.csv`` (one row per trained model and seed: steps, final loss,
parameters, training speed from MLflow), ``params.yaml`` as run, and ``provenance.json`` (the report's, plus the
wall time of the whole run when given). Every number comes from the pipeline's own files; nothing is computed
here but the copy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from pipelines.common import paths
from pipelines.common.config import load_params
from pipelines.common.env import UserError
from pipelines.common.files import write_text

FIGURES = ("trajectories", "training", "resources")


def runs_table(params_path: Path) -> pd.DataFrame:
    """model, seed, steps, final_loss, params, it_per_s (MLflow, when it has the run), device/threads."""
    params = load_params(params_path)
    speed: dict[tuple[str, str], float] = {}
    try:
        from pipelines.reporting.inputs import latest_runs, mlflow_runs

        runs = latest_runs(mlflow_runs(params.profile), params.models, params.seeds)
        col = "metrics.train/it_per_s"
        if col in runs.columns:
            speed = {(r["tags.model"], r["tags.seed"]): r[col] for _, r in runs.iterrows()}
    except Exception as exc:  # MLflow is optional here: the speed column stays empty
        print(f"note: no training speeds from MLflow ({exc.__class__.__name__})", file=sys.stderr)
    rows = []
    for m in params.models:
        for s in params.seeds:
            f = paths.TRAIN_DIR / paths.run_name(m, s) / paths.TRAIN_SUMMARY
            if f.is_file():
                t = json.loads(f.read_text())
                rows.append({"model": m, "seed": s, "steps": t["steps"], "budgets": " ".join(
                    str(b) for b in params.train.budgets), "final_loss": t["final_loss"], "params": t["params"],
                    "batch": params.train.batch, "patch": params.train.patch, "threads": params.train.threads,
                    "it_per_s": speed.get((m, str(s)))})
    return pd.DataFrame(rows)


def export(out: Path, params_path: Path, wall_s: float | None) -> list[str]:
    tables = paths.REPORT_DIR / "tables"
    if not tables.is_dir():
        raise UserError(f"{tables}: no report to export (run the pipeline first)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in sorted(tables.glob("*.csv")):
        shutil.copyfile(f, out / f.name)
        written.append(f.name)
    for name in FIGURES:
        for f in (paths.REPORT_DIR / "figures").glob(f"{name}.*"):
            shutil.copyfile(f, out / f.name)
            written.append(f.name)
    write_text(out / "runs.csv", runs_table(params_path).to_csv(index=False))
    shutil.copyfile(params_path, out / "params.yaml")
    prov_file = paths.REPORT_DIR / "provenance.json"
    prov = json.loads(prov_file.read_text()) if prov_file.is_file() else {}
    if wall_s is not None:
        prov["wall_s"] = round(wall_s, 1)
    write_text(out / "provenance.json", json.dumps(prov, indent=2) + "\n")
    return [*written, "runs.csv", "params.yaml", "provenance.json"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="interir-bench export-run", description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder to write (e.g. docs/small-run)")
    p.add_argument("--params", default=str(paths.PARAMS))
    p.add_argument("--wall-s", type=float, help="the whole run's wall time in seconds (recorded in provenance)")
    a = p.parse_args(argv)
    files = export(Path(a.out), Path(a.params), a.wall_s)
    print(f"exported {len(files)} files to {a.out}")
    return 0


if __name__ == "__main__":
    from pipelines.common import entry

    sys.exit(entry.run("export-run", main))

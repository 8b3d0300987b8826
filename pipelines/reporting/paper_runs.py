"""The paper's numbers as MLflow runs (``role=paper``) with the metric keys the evaluate stage logs.

One run per paper row (named ``paper:<model>`` for methods the harness trains, else
``paper:<method>``) in the profile's experiment, so the MLflow compare view puts the paper
and the reproduced runs side by side. Every table of :data:`pipelines.reporting.specs.TABLES`
contributes through the metric function of its kind (:data:`METRICS`). Idempotent: runs are
tagged with the hash of the reference CSVs and logged only when no ``role=paper`` run with
that hash exists yet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pandas as pd

from pipelines.common.tracking import metric_key
from pipelines.reporting import specs
from pipelines.reporting.inputs import reference_hash, reference_table
from pipelines.reporting.specs import TableSpec, model_for


def _mdir(spec: TableSpec, r: pd.Series) -> dict[str, float]:
    comb = "" if r[spec.key_col] == "average" else r[spec.key_col]
    return {metric_key("MDIR", ours, comb): float(r[paper]) for paper, ours in spec.metrics}


def _sdir(spec: TableSpec, r: pd.Series) -> dict[str, float]:
    set_name = {v: k for k, v in specs.SDIR_LABELS.items()}.get(r[spec.key_col], r[spec.key_col])
    return {metric_key(set_name, ours): float(r[paper]) for paper, ours in spec.metrics}


def _gain(spec: TableSpec, r: pd.Series) -> dict[str, float]:
    comb = "" if spec.combination == "average" else spec.combination
    return {metric_key("MDIR", "psnr", comb): float(r["psnr"])}


def _resources(spec: TableSpec, r: pd.Series) -> dict[str, float]:
    out = {f"paper/{col}": float(r[col]) for col, _ in spec.quantities}
    out.update({metric_key("MDIR", ours): float(r[paper]) for paper, ours in spec.metrics})
    return out


# Per table kind: one reference row -> its metrics under the evaluate stage's keys.
METRICS: dict[str, Callable[[TableSpec, pd.Series], dict[str, float]]] = {
    specs.MDIR: _mdir,
    specs.SDIR: _sdir,
    specs.GAIN: _gain,
    specs.RESOURCES: _resources,
}


def paper_metrics() -> dict[str, dict[str, float]]:
    """{run key (model or method): {metric key: value}} from the reported tables' reference CSVs."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for spec in specs.reported_tables():
        for _, r in reference_table(spec.csv).iterrows():
            label = r[spec.label_col]
            out[model_for(spec.id, label) or label].update(METRICS[spec.kind](spec, r))
    return dict(out)


def log_paper_runs(profile: str) -> dict[str, str]:
    """Log (once per reference hash) the paper's numbers; return {run key: run id}."""
    import time

    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    from interir.registry import list_models
    from pipelines.common import tracking

    mlflow = tracking.setup(profile)
    exp = mlflow.get_experiment_by_name(tracking.experiment_name(profile))
    ref = reference_hash()
    client = MlflowClient()
    existing = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.role = 'paper' and tags.`reference.hash` = '{ref}'",
        max_results=1000)
    have = {r.data.tags.get("model", ""): r.info.run_id for r in existing}
    wanted = paper_metrics()
    now = int(time.time() * 1000)
    for key, metrics in wanted.items():
        if key in have:
            continue
        # A method the harness does not train is its own paper row.
        where = tracking.paper_tags(key) if key in list_models() else {"paper.table": "", "paper.row": key}
        tags = {"role": "paper", "model": key, "profile": profile, "seed": "-", "reference.hash": ref, **where,
                "source": "arXiv 2511.10166 (quoted in pipelines/reporting/reference)"}
        run = client.create_run(exp.experiment_id, run_name=f"paper:{key}", tags=tags)
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                         tags=[RunTag("mlflow.note.content", "Numbers quoted from the paper, not computed.")])
        client.set_terminated(run.info.run_id)
        have[key] = run.info.run_id
    return {k: have[k] for k in wanted}

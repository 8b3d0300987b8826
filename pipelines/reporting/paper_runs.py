"""The paper's numbers as MLflow runs (``role=paper``) with the metric keys the evaluate stage logs.

One run per paper row (named ``paper:<model>`` for methods the harness trains, else
``paper:<method>``) in the profile's experiment, so the MLflow compare view puts the paper
and the reproduced runs side by side. Idempotent: runs are tagged with the hash of the
reference CSVs and logged only when no ``role=paper`` run with that hash exists yet.
"""

from __future__ import annotations

from collections import defaultdict

from pipelines.reporting.inputs import SDIR_LABELS, reference_hash, reference_table
from pipelines.reporting.specs import PAPER_ROWS


def _model_of(table: str, label: str) -> str:
    for model, rows in PAPER_ROWS.items():
        if (table, label) in rows:
            return model
    return ""


def paper_metrics() -> dict[str, dict[str, float]]:
    """{run key (model or method): {metric key: value}} from the reference tables."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    t1 = reference_table("table1_mdir")
    for _, r in t1.iterrows():
        key = _model_of("table1", r["method"]) or r["method"]
        prefix = "MDIR" if r["combination"] == "average" else f"MDIR/{r['combination'].replace('+', '_')}"
        out[key][f"{prefix}/psnr"] = float(r["psnr"])
        out[key][f"{prefix}/ssim"] = float(r["ssim"])
    inv = {v: k for k, v in SDIR_LABELS.items()}
    for table, metrics in (("table2_dehaze", ("psnr", "ssim")), ("table3_derain_y", ("psnr_y", "ssim_y"))):
        for _, r in reference_table(table).iterrows():
            key = _model_of(table.split("_")[0], r["method"]) or r["method"]
            set_name = inv.get(r["testset"], r["testset"])
            for m, col in zip(metrics, ("psnr", "ssim")):
                out[key][f"{set_name}/{m}"] = float(r[col])
    for table, label_col, comb in (("table4_ablation", "variant", "haze_rain_noise"),
                                   ("table5_transplant", "method", "haze_rain_noise"),
                                   ("table7_conv_alternatives", "conv", "")):
        for _, r in reference_table(table).iterrows():
            key = _model_of(table.split("_")[0], r[label_col]) or r[label_col]
            out[key][f"MDIR/{comb}/psnr" if comb else "MDIR/psnr"] = float(r["psnr"])
    for _, r in reference_table("table8_resources").iterrows():
        key = _model_of("table8", r["method"]) or r["method"]
        for col in ("time_s", "params_m", "gflops"):
            out[key][f"paper/{col}"] = float(r[col])
        out[key]["MDIR/psnr"] = float(r["psnr"])
        out[key]["MDIR/ssim"] = float(r["ssim"])
    return dict(out)


def log_paper_runs(profile: str) -> dict[str, str]:
    """Log (once per reference hash) the paper's numbers; return {run key: run id}."""
    import time

    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

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
        tables = ",".join(t for t, _ in PAPER_ROWS[key]) if key in PAPER_ROWS else ""
        rows = "; ".join(f"{t}:{r}" for t, r in PAPER_ROWS[key]) if key in PAPER_ROWS else key
        tags = {"role": "paper", "model": key, "profile": profile, "seed": "-",
                "reference.hash": ref, "paper.table": tables, "paper.row": rows,
                "source": "arXiv 2511.10166 (quoted in pipelines/reference)"}
        run = client.create_run(exp.experiment_id, run_name=f"paper:{key}", tags=tags)
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                         tags=[RunTag("mlflow.note.content", "Numbers quoted from the paper, not computed.")])
        client.set_terminated(run.info.run_id)
        have[key] = run.info.run_id
    return {k: have[k] for k in wanted}

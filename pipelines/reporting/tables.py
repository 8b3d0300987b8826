"""The report's tables: the paper's Tables 1-5, 7, 8 next to ours, in one long format.

Every table is a DataFrame with one row per (method, key, metric): ``paper`` (quoted from
``pipelines/reference``), ``ours`` (computed from the per-image results or profile.json),
``delta = ours - paper``, the bootstrap interval of ours (``ci_low``, ``ci_high``), the number
of test images and seeds, and a ``status``: reproduced, not run (a harness model without
results), paper only (a method this harness does not train) or not available (our data has
no such test set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from pipelines.reporting.inputs import (
    COMBINATION_ORDER,
    NAN_EST,
    SDIR_LABELS,
    Estimate,
    difference,
    estimate,
    profile_value,
    reference_table,
    select,
)
from pipelines.reporting.specs import PAPER_ROWS

REPRODUCED, NOT_RUN, PAPER_ONLY, NOT_AVAILABLE = "reproduced", "not run", "paper only", "not available"
COLUMNS = ["table", "method", "model", "key", "metric", "paper", "ours", "delta", "ci_low", "ci_high", "n_images",
           "n_seeds", "status", "note"]
TITLES = {
    "table1_mdir": "Table 1: MDIR, seven degradation combinations and their average (PSNR dB / SSIM, RGB)",
    "table2_dehaze": "Table 2: dehazing, SOTS (PSNR dB / SSIM, RGB)",
    "table3_derain_y": "Table 3: deraining (PSNR dB / SSIM on the Y channel)",
    "table4_ablation": "Table 4: ablation ladder on DeepSN-Net (PSNR dB, haze+rain+noise column of Table 1)",
    "table5_transplant": "Table 5: the explainable convolution transplanted (PSNR dB, haze+rain+noise column)",
    "table7_conv_alternatives": "Table 7: alternatives to the explainable convolution (PSNR dB, 7-combination "
                                "average; extra parameters in M)",
    "table8_resources": "Table 8: time, parameters, MACs, PSNR, SSIM (7-combination average)",
}


def model_for(table: str, label: str) -> str:
    """The harness model reported under ``label`` in ``table`` ("" if the harness does not train it)."""
    for model, rows in PAPER_ROWS.items():
        if (table.split("_")[0], label) in rows:
            return model
    return ""


def _row(table: str, method: str, model: str, key: str, metric: str, paper: float, est: Estimate,
         status: str, note: str = "") -> dict:
    return {"table": table, "method": method, "model": model, "key": key, "metric": metric, "paper": paper,
            "ours": est.value, "delta": est.value - paper if math.isfinite(paper) else float("nan"),
            "ci_low": est.low, "ci_high": est.high, "n_images": est.n, "n_seeds": est.seeds, "status": status,
            "note": note}


def _status(model: str, models: Sequence[str], est: Estimate) -> str:
    if not model:
        return PAPER_ONLY
    if model not in models or not est.ok:
        return NOT_RUN
    return REPRODUCED


def _mdir(per_image: pd.DataFrame, model: str, metric: str, comb: str, n_boot: int, ci: float) -> Estimate:
    if not model:
        return NAN_EST
    return estimate(per_image, model, "MDIR", metric, n_boot, ci, "" if comb == "average" else comb)


def table1(per_image: pd.DataFrame, models: Sequence[str], n_boot: int, ci: float) -> pd.DataFrame:
    """Table 1: MDIR PSNR/SSIM per combination and average."""
    paper = reference_table("table1_mdir")
    rows = []
    for method in paper["method"].unique():
        model = model_for("table1", method)
        for comb in (*COMBINATION_ORDER, "average"):
            pref = paper[(paper["method"] == method) & (paper["combination"] == comb)]
            for metric in ("psnr", "ssim"):
                est = _mdir(per_image, model, metric, comb, n_boot, ci) if model in models else NAN_EST
                p = float(pref[metric].iloc[0]) if len(pref) else float("nan")
                rows.append(_row("table1_mdir", method, model, comb, metric, p, est, _status(model, models, est)))
    return pd.DataFrame(rows, columns=COLUMNS)


def _sdir_table(table: str, per_image: pd.DataFrame, models: Sequence[str], metrics: dict[str, str],
                n_boot: int, ci: float, subset_note: str) -> pd.DataFrame:
    paper = reference_table(table)
    rows = []
    have_sets = {s.lower() for s in per_image["set"].unique()} if len(per_image) else set()
    for method in paper["method"].unique():
        model = model_for(table.split("_")[0], method)
        for testset in paper[paper["method"] == method]["testset"]:
            ours_set = next((k for k, v in SDIR_LABELS.items() if v == testset), "")
            pref = paper[(paper["method"] == method) & (paper["testset"] == testset)]
            for paper_metric, our_metric in metrics.items():
                p = float(pref[paper_metric].iloc[0])
                note = ""
                if not model:
                    est, status = NAN_EST, PAPER_ONLY
                elif model not in models or select(per_image, model, "MDIR").empty:
                    est, status = NAN_EST, NOT_RUN
                elif testset == "average":
                    est, status = NAN_EST, NOT_AVAILABLE
                    note = "average over the four sets not computable on our data"
                elif ours_set not in have_sets:
                    est, status = NAN_EST, NOT_AVAILABLE
                    note = "test set not under the data root"
                else:
                    est = estimate(per_image, model, ours_set, our_metric, n_boot, ci)
                    status = REPRODUCED if est.ok else NOT_RUN
                    note = subset_note.format(n=est.n) if est.ok else ""
                rows.append(_row(table, method, model, testset, paper_metric, p, est, status, note))
    return pd.DataFrame(rows, columns=COLUMNS)


def table2(per_image: pd.DataFrame, models: Sequence[str], n_boot: int, ci: float) -> pd.DataFrame:
    """Table 2: dehazing; ours on the SOTS-indoor subset under the data root (RGB)."""
    return _sdir_table("table2_dehaze", per_image, models, {"psnr": "psnr", "ssim": "ssim"}, n_boot, ci,
                       "{n}-image subset of SOTS-indoor (500 in the paper); trained on MDIR, not on ITS")


def table3(per_image: pd.DataFrame, models: Sequence[str], n_boot: int, ci: float) -> pd.DataFrame:
    """Table 3: deraining on the Y channel; ours on the Rain100H subset."""
    return _sdir_table("table3_derain_y", per_image, models, {"psnr": "psnr_y", "ssim": "ssim_y"}, n_boot, ci,
                       "{n}-image subset of Rain100H (100 in the paper); trained on MDIR, not on the rain sets")


def _gain_table(table: str, label_col: str, baseline_of: dict[str, str], metric_col: str, comb: str,
                per_image: pd.DataFrame, models: Sequence[str], n_boot: int, ci: float,
                gain_col: str, gain_metric: str) -> pd.DataFrame:
    """A PSNR table with gains over a baseline row (Tables 4, 5, 7)."""
    paper = reference_table(table)
    rows = []
    for _, r in paper.iterrows():
        label = r[label_col]
        model = model_for(table.split("_")[0], label)
        est = _mdir(per_image, model, "psnr", comb, n_boot, ci) if model in models else NAN_EST
        status = _status(model, models, est)
        rows.append(_row(table, label, model, comb, "psnr", float(r[metric_col]), est, status))
        base_label = baseline_of.get(label)
        if base_label is None:
            continue
        base_model = model_for(table.split("_")[0], base_label)
        if model in models and base_model in models:
            d = difference(per_image, model, base_model, "MDIR", "psnr", n_boot, ci,
                           "" if comb == "average" else comb)
        else:
            d = NAN_EST
        rows.append(_row(table, label, model, comb, gain_metric, float(r[gain_col]), d,
                         _status(model, models, d), f"vs {base_label} (paired over test images)"))
    return pd.DataFrame(rows, columns=COLUMNS)


def table4(per_image: pd.DataFrame, models: Sequence[str], n_boot: int, ci: float) -> pd.DataFrame:
    """Table 4: the ablation ladder, PSNR on haze+rain+noise and gains over the DeepSN-Net baseline."""
    base = "DeepSN-Net baseline"
    labels = reference_table("table4_ablation")["variant"]
    return _gain_table("table4_ablation", "variant", {v: base for v in labels if v != base}, "psnr",
                       "haze+rain+noise", per_image, models, n_boot, ci, "gain_db", "gain_db")


def table5(per_image: pd.DataFrame, models: Sequence[str], n_boot: int, ci: float) -> pd.DataFrame:
    """Table 5: explainable conv in FDTANet and DeepSN-Net (haze+rain+noise)."""
    return _gain_table("table5_transplant", "method", {"FDTANet + explainable conv": "FDTANet",
                                                        "DeepSN-Net + explainable conv": "DeepSN-Net"},
                       "psnr", "haze+rain+noise", per_image, models, n_boot, ci, "gain_db", "gain_db")


def table7(per_image: pd.DataFrame, models: Sequence[str], profile: dict, n_boot: int, ci: float) -> pd.DataFrame:
    """Table 7: CoMo and ARConv instead of the explainable conv; PSNR deltas and extra parameters."""
    base = "explainable conv"
    df = _gain_table("table7_conv_alternatives", "conv", {"CoMo": base, "ARConv": base}, "psnr", "average",
                     per_image, models, n_boot, ci, "delta_db", "delta_db")
    paper = reference_table("table7_conv_alternatives")
    base_model = model_for("table7", base)
    extra = []
    for _, r in paper.dropna(subset=["extra_params_m"]).iterrows():
        model = model_for("table7", r["conv"])
        ours = (profile_value(profile, model, "paper", "params") - profile_value(profile, base_model, "paper",
                                                                                 "params")) / 1e6
        est = Estimate(ours, float("nan"), float("nan"), 0, 0)
        status = REPRODUCED if math.isfinite(ours) else NOT_RUN
        extra.append(_row("table7_conv_alternatives", r["conv"], model, "paper preset", "extra_params_m",
                          float(r["extra_params_m"]), est, status,
                          "params(variant) - params(InterIR), paper preset, from profile.json"))
    return pd.concat([df, pd.DataFrame(extra, columns=COLUMNS)], ignore_index=True)


def table8(per_image: pd.DataFrame, models: Sequence[str], profile: dict, pipeline_preset: str, machine: str,
           n_boot: int, ci: float) -> pd.DataFrame:
    """Table 8: resources (paper-preset params/MACs, CPU latency on this machine) and MDIR average quality."""
    paper = reference_table("table8_resources")
    rows = []
    for _, r in paper.iterrows():
        method = r["method"]
        model = model_for("table8", method)
        have = model in models and model in profile
        for metric in ("time_s", "params_m", "gflops", "psnr", "ssim"):
            p = float(r[metric])
            note = ""
            if metric in ("psnr", "ssim"):
                est = _mdir(per_image, model, metric, "average", n_boot, ci) if model in models else NAN_EST
                status = _status(model, models, est)
            else:
                key = {"time_s": "latency_s", "params_m": "params", "gflops": "gmacs"}[metric]
                v = profile_value(profile, model, "paper", key) if have else float("nan")
                v = v / 1e6 if metric == "params_m" else v
                est = Estimate(v, float("nan"), float("nan"), 0, 0)
                status = PAPER_ONLY if not model else REPRODUCED if math.isfinite(v) else NOT_AVAILABLE if have \
                    else NOT_RUN
                if metric == "gflops" and math.isfinite(v):
                    note = "ours: MACs (1 multiply-add = 1), paper preset, 1x3x256x256"
                if metric == "time_s":
                    note = f"ours: CPU, batch 1, 256x256, paper preset; {machine}" if math.isfinite(v) else (
                        "paper-preset latency not measured (profiling.paper_full=false)" if have else "")
            rows.append(_row("table8_resources", method, model, "", metric, p, est, status, note))
        if model:
            v = profile_value(profile, model, pipeline_preset, "latency_s") if have else float("nan")
            est = Estimate(v, float("nan"), float("nan"), 0, 0)
            rows.append(_row("table8_resources", method, model, "", f"time_s_{pipeline_preset}_preset",
                             float("nan"), est, REPRODUCED if math.isfinite(v) else NOT_RUN,
                             f"ours only: CPU latency of the {pipeline_preset} preset, 256x256; {machine}"))
    return pd.DataFrame(rows, columns=COLUMNS)


def build_all(per_image: pd.DataFrame, models: Sequence[str], profile: dict, pipeline_preset: str, machine: str,
              n_boot: int, ci: float) -> dict[str, pd.DataFrame]:
    """Every table, keyed by the reference table's name."""
    return {
        "table1_mdir": table1(per_image, models, n_boot, ci),
        "table2_dehaze": table2(per_image, models, n_boot, ci),
        "table3_derain_y": table3(per_image, models, n_boot, ci),
        "table4_ablation": table4(per_image, models, n_boot, ci),
        "table5_transplant": table5(per_image, models, n_boot, ci),
        "table7_conv_alternatives": table7(per_image, models, profile, n_boot, ci),
        "table8_resources": table8(per_image, models, profile, pipeline_preset, machine, n_boot, ci),
    }

"""The report's tables: each paper table of :data:`pipelines.reporting.specs.TABLES` next to ours, in one long format.

Every table is a DataFrame with one row per (method, key, metric): ``paper`` (quoted from the
reference CSV), ``ours`` (computed from the per-image results or profile.json),
``delta = ours - paper``, the bootstrap interval of ours (``ci_low``, ``ci_high``), the number
of test images and seeds, and a ``status``: reproduced, not run (a harness model without
results), paper only (a method this harness does not train) or not available (our data has
no such test set). One builder per table kind (:data:`BUILDERS`), parametrised by the spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from pipelines.common.paths import INPUT_RUN
from pipelines.data.manifest import COMBINATIONS
from pipelines.reporting import specs
from pipelines.reporting.inputs import difference, estimate, profile_value, reference_table, select
from pipelines.reporting.specs import INPUT_LABEL, TableSpec, model_for
from pipelines.reporting.stats import NAN_EST, Estimate

REPRODUCED, NOT_RUN, PAPER_ONLY, NOT_AVAILABLE = "reproduced", "not run", "paper only", "not available"
# ci_unit: what the interval resamples ("source photo" on MDIR, "image" on SDIR sets; seeds too when n_seeds > 1).
COLUMNS = ["table", "method", "model", "key", "metric", "paper", "ours", "delta", "ci_low", "ci_high", "ci_unit",
           "n_units", "n_images", "n_seeds", "status", "note"]
HARNESS_NOTE = "harness row, not in the paper"


@dataclass(frozen=True)
class Results:
    """What the builders compute ours from: per-image scores, profile.json and the bootstrap settings."""

    per_image: pd.DataFrame
    models: Sequence[str]
    profile: dict
    pipeline_preset: str  # the preset the pipeline trained (its latency is a row of its own in Table 8)
    machine: str  # CPU of the latency numbers
    n_boot: int
    ci: float


def _row(table: str, method: str, model: str, key: str, metric: str, paper: float, est: Estimate,
         status: str, note: str = "") -> dict:
    return {"table": table, "method": method, "model": model, "key": key, "metric": metric, "paper": paper,
            "ours": est.value, "delta": est.value - paper if math.isfinite(paper) else float("nan"),
            "ci_low": est.low, "ci_high": est.high, "ci_unit": est.resampled, "n_units": est.units,
            "n_images": est.n, "n_seeds": est.seeds, "status": status, "note": note}


def harness_rows(spec: TableSpec) -> list[tuple[str, str]]:
    """(label, model) of the rows the harness adds to a table: the "no restoration" row, then the spec's own."""
    return [(INPUT_LABEL, INPUT_RUN)] * spec.with_input_row + list(spec.harness_rows)


def _ran(res: Results, model: str) -> bool:
    return model == INPUT_RUN or model in res.models


def _status(model: str, res: Results, est: Estimate) -> str:
    if not model:
        return PAPER_ONLY
    if not _ran(res, model) or not est.ok:
        return NOT_RUN
    return REPRODUCED


def _mdir(res: Results, model: str, metric: str, comb: str) -> Estimate:
    """Ours on the MDIR test split (one combination, or all for "average"); NaN for a model without results."""
    if not model or not _ran(res, model):
        return NAN_EST
    return estimate(res.per_image, model, "MDIR", metric, res.n_boot, res.ci, "" if comb == "average" else comb)


def mdir_table(spec: TableSpec, res: Results) -> pd.DataFrame:
    """Methods x (the seven combinations, average) x metrics (Table 1)."""
    paper = reference_table(spec.csv)
    rows = []
    methods = [(m, model_for(spec.id, m), "") for m in paper[spec.label_col].unique()]
    for method, model, note in methods + [(label, m, HARNESS_NOTE) for label, m in harness_rows(spec)]:
        for comb in (*COMBINATIONS, "average"):
            pref = paper[(paper[spec.label_col] == method) & (paper[spec.key_col] == comb)]
            for paper_metric, our_metric in spec.metrics:
                est = _mdir(res, model, our_metric, comb)
                p = float(pref[paper_metric].iloc[0]) if len(pref) else float("nan")
                rows.append(_row(spec.csv, method, model, comb, paper_metric, p, est, _status(model, res, est), note))
    return pd.DataFrame(rows, columns=COLUMNS)


def _sdir_estimate(spec: TableSpec, res: Results, model: str, testset: str, our_metric: str,
                   have_sets: set[str]) -> tuple[Estimate, str, str]:
    """(ours, status, note) of one method on one SDIR test set."""
    if not model:
        return NAN_EST, PAPER_ONLY, ""
    if not _ran(res, model) or select(res.per_image, model, "MDIR").empty:
        return NAN_EST, NOT_RUN, ""
    if testset == "average":
        return NAN_EST, NOT_AVAILABLE, "average over the four sets not computable on our data"
    ours_set = next((k for k, v in specs.SDIR_LABELS.items() if v == testset), "")
    if ours_set not in have_sets:
        return NAN_EST, NOT_AVAILABLE, "test set not under the data root, or not scored (evaluate.skip_sdir)"
    est = estimate(res.per_image, model, ours_set, our_metric, res.n_boot, res.ci)
    if not est.ok:
        return est, NOT_RUN, ""
    return est, REPRODUCED, spec.subset_note.format(n=est.n)


def sdir_table(spec: TableSpec, res: Results) -> pd.DataFrame:
    """Methods x the paper's test sets (Tables 2, 3); ours on the subsets under the data root."""
    paper = reference_table(spec.csv)
    have_sets = {s.lower() for s in res.per_image["set"].unique()} if len(res.per_image) else set()
    rows = []
    for method in paper[spec.label_col].unique():
        model = model_for(spec.id, method)
        for _, r in paper[paper[spec.label_col] == method].iterrows():
            for paper_metric, our_metric in spec.metrics:
                testset = r[spec.key_col]
                est, status, note = _sdir_estimate(spec, res, model, testset, our_metric, have_sets)
                rows.append(_row(spec.csv, method, model, testset, paper_metric, float(r[paper_metric]), est,
                                 status, note))
    for label, model in harness_rows(spec):
        for testset in paper[spec.key_col].unique():
            for paper_metric, our_metric in spec.metrics:
                est, status, note = _sdir_estimate(spec, res, model, testset, our_metric, have_sets)
                rows.append(_row(spec.csv, label, model, testset, paper_metric, float("nan"), est, status,
                                 "; ".join(n for n in (HARNESS_NOTE, note) if n)))
    return pd.DataFrame(rows, columns=COLUMNS)


def _gain(spec: TableSpec, res: Results, model: str, base_model: str) -> Estimate:
    """Ours: mean PSNR of ``model`` minus ``base_model``'s, paired over the test images."""
    if not (_ran(res, model) and _ran(res, base_model)):
        return NAN_EST
    comb = "" if spec.combination == "average" else spec.combination
    return difference(res.per_image, model, base_model, "MDIR", "psnr", res.n_boot, res.ci, comb)


def _extra_params(spec: TableSpec, res: Results, paper: pd.DataFrame) -> list[dict]:
    """Rows of the paper's extra parameters (M) of a variant over its baseline row, ours from profile.json."""
    baseline_of = dict(spec.baseline_of)
    rows = []
    for _, r in paper.dropna(subset=["extra_params_m"]).iterrows():
        model = model_for(spec.id, r[spec.label_col])
        base_model = model_for(spec.id, baseline_of[r[spec.label_col]])
        ours = (profile_value(res.profile, model, "paper", "params")
                - profile_value(res.profile, base_model, "paper", "params")) / 1e6
        est = Estimate(ours, float("nan"), float("nan"), 0, 0)
        rows.append(_row(spec.csv, r[spec.label_col], model, "paper preset", "extra_params_m",
                         float(r["extra_params_m"]), est, REPRODUCED if math.isfinite(ours) else NOT_RUN,
                         "params(variant) - params(InterIR), paper preset, from profile.json"))
    return rows


def gain_table(spec: TableSpec, res: Results) -> pd.DataFrame:
    """A PSNR column with each row's gain over its baseline row (Tables 4, 5, 7)."""
    paper = reference_table(spec.csv)
    baseline_of = dict(spec.baseline_of)
    rows = []
    nan = float("nan")
    entries = [(r[spec.label_col], model_for(spec.id, r[spec.label_col]), float(r["psnr"]),
                float(r[spec.gain_col]) if spec.gain_col in r and pd.notna(r[spec.gain_col]) else nan, "")
               for _, r in paper.iterrows()]
    entries += [(label, model, nan, nan, HARNESS_NOTE) for label, model in harness_rows(spec)]
    for label, model, paper_psnr, paper_gain, note in entries:
        est = _mdir(res, model, "psnr", spec.combination)
        rows.append(_row(spec.csv, label, model, spec.combination, "psnr", paper_psnr, est,
                         _status(model, res, est), note))
        base_label = baseline_of.get(label)
        if base_label is None:
            continue
        d = _gain(spec, res, model, model_for(spec.id, base_label))
        unit = "source photos" if d.ci_unit else "test images"
        rows.append(_row(spec.csv, label, model, spec.combination, spec.gain_col, paper_gain, d, _status(model, res, d),
                         "; ".join(n for n in (note, f"vs {base_label} (paired over {unit})") if n)))
    if spec.extra_params:
        rows += _extra_params(spec, res, paper)
    return pd.DataFrame(rows, columns=COLUMNS)


def _quantity(res: Results, model: str, have: bool, key: str) -> tuple[Estimate, str, str]:
    """(ours, status, note) of one profile.json quantity at the paper preset."""
    v = profile_value(res.profile, model, "paper", key) if have else float("nan")
    v = v / 1e6 if key == "params" else v
    est = Estimate(v, float("nan"), float("nan"), 0, 0)
    status = PAPER_ONLY if not model else REPRODUCED if math.isfinite(v) else NOT_AVAILABLE if have else NOT_RUN
    note = ""
    if key == "gmacs" and math.isfinite(v):
        note = "ours: MACs (1 multiply-add = 1), paper preset, 1x3x256x256"
    if key == "latency_s":
        note = f"ours: CPU, batch 1, 256x256, paper preset; {res.machine}" if math.isfinite(v) else (
            "paper-preset latency not measured (benchmarks/bench_latency.py --presets paper)" if have else "")
    return est, status, note


def resources_table(spec: TableSpec, res: Results) -> pd.DataFrame:
    """Paper-preset resources (profile.json; CPU latency on this machine) and MDIR average quality (Table 8)."""
    paper = reference_table(spec.csv)
    rows = []
    for _, r in paper.iterrows():
        method = r[spec.label_col]
        model = model_for(spec.id, method)
        have = model in res.profile  # trained models and the sizing-only ones (profiling.sizing_models)
        for col, key in spec.quantities:
            est, status, note = _quantity(res, model, have, key)
            rows.append(_row(spec.csv, method, model, "", col, float(r[col]), est, status, note))
        for paper_metric, our_metric in spec.metrics:
            est = _mdir(res, model, our_metric, "average")
            rows.append(_row(spec.csv, method, model, "", paper_metric, float(r[paper_metric]), est,
                             _status(model, res, est)))
        if model:
            preset = res.pipeline_preset
            v = profile_value(res.profile, model, preset, "latency_s") if have else float("nan")
            est = Estimate(v, float("nan"), float("nan"), 0, 0)
            rows.append(_row(spec.csv, method, model, "", f"time_s_{preset}_preset", float("nan"), est,
                             REPRODUCED if math.isfinite(v) else NOT_RUN,
                             f"ours only: CPU latency of the {preset} preset, 256x256; {res.machine}"))
    return pd.DataFrame(rows, columns=COLUMNS)


BUILDERS: dict[str, Callable[[TableSpec, Results], pd.DataFrame]] = {
    specs.MDIR: mdir_table,
    specs.SDIR: sdir_table,
    specs.GAIN: gain_table,
    specs.RESOURCES: resources_table,
}


def build_all(res: Results) -> dict[str, pd.DataFrame]:
    """Every reported table of the registry, keyed by its reference CSV stem, in the registry's order."""
    return {spec.csv: BUILDERS[spec.kind](spec, res) for spec in specs.reported_tables()}

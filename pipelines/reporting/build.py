"""The report (the ``report`` stage's library): paper vs reproduced tables, claims ledger, figures.

Reads the per-image results (``results/eval/<model>-s<seed>/per_image.csv``), ``results/profile.json``,
the MLflow runs of the profile (run ids, training curves) and the trained checkpoints (t-SNE,
masks, iterates); writes ``reports/tables/*.csv``, ``reports/figures/*`` and one self-contained
``reports/index.html`` (images embedded as data URIs). Paper numbers come only from the reference
CSVs; which tables exist is :data:`pipelines.reporting.specs.TABLES`. Tables are built in
:mod:`pipelines.reporting.tables`, figures in :mod:`pipelines.reporting.figures`, the claims ledger
in :mod:`pipelines.reporting.claims`, the page in :mod:`pipelines.reporting.page` and its template.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.common import env, tracking
from pipelines.common.config import Params
from pipelines.common.files import atomic_dir, write_bytes, write_text
from pipelines.reporting import claims as claims_mod
from pipelines.reporting import figures as figs
from pipelines.reporting import inputs as data
from pipelines.reporting import page, specs, tables, trajectories
from pipelines.reporting.figures import Rendered
from pipelines.reporting.inputs import load_per_image

EXTRA_TABLE_FILES = ("claims", "paper_consistency", "claim_trajectories", "sensitivity")
# Figures of a report with every input (the visual grids of SDIR sets come on top, one per set found).
FIGURES = ("resources", "psnr_vs_level", "tsne", "visual_mdir_mixed", "visual_mdir_single", "masks", "iterates",
           "trajectories", "training")


def table_files() -> tuple[str, ...]:
    """Stems of the CSVs under ``reports/tables``: every reported paper table, then the ledger, checks and runs."""
    return (*(s.csv for s in specs.reported_tables()), *EXTRA_TABLE_FILES)


# --------------------------------------------------------------------------- assembly


def _samples(per_image: pd.DataFrame, models: list[str], seed: int, eval_dir: Path, set_name: str,
             pairs: dict[str, Any], label: Callable[[Any], str]) -> list[dict]:
    """The saved samples of one set: index -> input/target paths and each model's PSNR."""
    from pipelines.common.paths import run_name

    out = []
    for model in models:
        rows = per_image[(per_image["model"] == model) & (per_image["seed"] == seed) & (per_image["set"] == set_name)]
        sdir = eval_dir / run_name(model, seed) / "samples"
        if rows.empty or not sdir.is_dir():
            continue
        saved = sorted(int(f.stem.rsplit("_", 1)[1]) for f in sdir.glob(f"{set_name}_*.png"))
        for i in (i for i in saved if i < len(rows)):
            name = rows["image"].iloc[i]
            pair = pairs.get(name)
            if pair is None:
                continue
            psnr = {m: float(v) for m, v in per_image[(per_image["set"] == set_name) & (per_image["seed"] == seed)
                                                      & (per_image["image"] == name)][["model", "psnr"]].values}
            out.append({"index": i, "input": pair.input, "target": pair.target, "label": label(pair),
                        "psnr": psnr})
        break
    return out


def _sdir_pairs(data_dir: Path) -> dict[str, dict[str, Any]]:
    """{set name: {image id: pair}} of the SDIR sets synthesize copied into the dataset."""
    from pipelines.data import sdir
    from pipelines.data.manifest import SDIR_DIR

    try:
        return {name: {p.name: p for p in pairs} for name, pairs in sdir.load_sets(data_dir / SDIR_DIR).items()}
    except env.UserError:
        return {}


# The MDIR visual grid in two figures (two to three degradations; one), each legible at native size.
MDIR_GROUPS = (("mixed", "MDIR, two or three degradations"), ("single", "MDIR, one degradation"))


def _mdir_group(combination: str) -> str:
    return "mixed" if "+" in combination else "single"


def build_figures(params: Params, per_image: pd.DataFrame, profile: dict, tabs: dict[str, pd.DataFrame],
                  traj: pd.DataFrame, claim_labels: dict[str, str],
                  runs: pd.DataFrame, eval_dir: Path, train_dir: Path, data_dir: Path) -> tuple[dict, dict]:
    """{figure name: Rendered} and extra numbers (t-SNE silhouettes, seconds per figure)."""
    from pipelines.data.manifest import read_manifest

    models = list(params.models)
    seed = params.seeds[0]
    out: dict[str, Rendered] = {}
    extra: dict[str, Any] = {}
    try:
        test_pairs = read_manifest(data_dir, "test")
    except env.UserError:
        test_pairs = []

    timings: dict[str, float] = {}
    t_last = [time.perf_counter()]

    def put(name: str, fig: Any, caption: str, photo: bool = False) -> None:
        if fig is not None:
            out[name] = figs.render(fig, caption, photo)
        now = time.perf_counter()
        timings[name] = round(now - t_last[0], 2)
        t_last[0] = now

    put("resources", figs.fig_resources(tabs[specs.spec("table8").csv], profile, per_image, models),
        "Left: the paper's Table 8 (PSNR against GFLOPs, marker area = parameters). Right: ours; MACs and "
        "parameters of the paper preset (profile.json), PSNR of the model trained by this pipeline at the "
        f"'{params.profile}' preset, so the y axes are not comparable.")
    put("psnr_vs_level", figs.fig_levels(per_image),
        "PSNR of each MDIR test image against the level of one degradation (any combination containing it). "
        "Haze is given as visibility: lower visibility means denser haze.")
    by_comb: dict[str, list] = {}
    for p in test_pairs:
        by_comb.setdefault(p.combination, []).append(p)
    tsne_pairs = [p for c in by_comb.values() for p in c[:20]]
    tsne_models = [(m, lbl) for m, lbl in (("interir", "InterIR"), ("deepsn_net", "DeepSN-Net")) if m in models]
    fig, sil = figs.fig_tsne(train_dir, seed, tsne_pairs, tsne_models) if tsne_models else (None, {})
    extra["silhouette"] = sil
    put("tsne", fig, "Paper Fig. 6: t-SNE of degradation embeddings (mean and standard deviation over space of "
        "the last unfolding stage's features, standardised), coloured by degradation combination. The "
        "silhouette score (on the embeddings, not the 2-D map) measures how well the combinations separate: "
        "the paper's claim is that InterIR separates them better than DeepSN-Net.")
    manifest = {p.name: p for p in test_pairs}
    samples = _samples(per_image, models, seed, eval_dir, "MDIR", manifest, lambda p: p.combination)
    for group, title in MDIR_GROUPS:
        rows = [s for s in samples if _mdir_group(s["label"]) == group]
        put(f"visual_mdir_{group}", figs.fig_visual(title, "MDIR", rows, models, eval_dir, seed) if rows else None,
            f"{title}: degraded input, each model's restoration (saved by the evaluate stage), ground truth.",
            photo=True)
    for set_name, pairs in _sdir_pairs(data_dir).items():
        s = _samples(per_image, models, seed, eval_dir, set_name, pairs, lambda p: p.name)
        if s:
            put(f"visual_{set_name}", figs.fig_visual(set_name, set_name, s, models, eval_dir, seed),
                f"Real {set_name} pairs (the subset under the data root): input, each model, ground truth.",
                photo=True)
    net = figs.load_checkpoint(train_dir, "interir", seed) if "interir" in models else None
    if net is not None and test_pairs:
        hrn = [p for p in test_pairs if p.combination == "haze+rain+noise"] or test_pairs
        put("masks", figs.fig_masks(net, hrn[0]),
            "InterIR's explainable convolutions (Eq. 16): the binary activation mask M = 1[x >= tau] of a few "
            "layers for one test input, as the fraction of channels active at each pixel of the feature grid.")
        its_pairs = [p for c in by_comb.values() for p in c[:2]]
        put("iterates", figs.fig_iterates(net, its_pairs, "InterIR"),
            "The unfolding made visible: the image estimate x_k after stages k of the trained InterIR, and the "
            "PSNR of every iterate (grey: single images, red: mean).", photo=True)
    put("trajectories", figs.fig_trajectories(traj, claim_labels),
        "Each MDIR quality claim's delta (ours, model A - model B, dB) at every training budget, with its 95% "
        "interval over source photos (and seeds); the dashed line is 0. Budgets branch off one run (wsd "
        "schedule), so each point equals a separate run of that many steps.")
    put("training", figs.fig_training(data.training_curves(train_dir, models, params.seeds)),
        "Training loss per run (results/train/<model>-s<seed>/curve.csv: the mean of the last train.log_every "
        "steps' losses, logged every train.log_every steps; also in MLflow as train/loss).")
    extra["timings"] = timings
    return out, extra


def with_trends_and_power(ledger: pd.DataFrame, traj: pd.DataFrame, per_image: pd.DataFrame) -> pd.DataFrame:
    """The ledger with each quality claim's trend over budget and, for an undecided one, what deciding it costs."""
    trends = trajectories.summary(traj)
    need = trajectories.power(per_image, claims_mod.load_claims()).set_index("claim") if len(per_image) else None
    undecided = (claims_mod.INCONCLUSIVE, claims_mod.BELOW_INPUT)

    def cost(row: pd.Series) -> str:
        if need is None or row["verdict"] not in undecided or row["id"] not in need.index:
            return ""
        return trajectories.power_text(need.loc[row["id"]])

    return ledger.assign(trend=ledger["id"].map(trends).fillna(""), to_decide=ledger.apply(cost, axis=1))


def provenance(params: Params, data_dir: Path, runs: pd.DataFrame, paper_runs: dict[str, str]) -> dict[str, Any]:
    from pipelines.data.manifest import data_version

    ids = {f"{r['tags.model']}/s{r['tags.seed']}": f"{r['run_id']} ({r['status']})"
           for _, r in data.latest_runs(runs, params.models, params.seeds).iterrows()}
    return {
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "profile": params.profile,
        "models": list(params.models),
        "seeds": list(params.seeds),
        "git_commit": data.git_commit(),
        "data_version_dvc_md5": data.dvc_data_hash() or "(not in dvc.lock)",
        "data_version_manifest": data_version(data_dir),
        "reference_hash": data.reference_hash(),
        "mlflow_tracking_uri": tracking.tracking_uri(),
        "mlflow_runs": ids,
        "mlflow_paper_runs": paper_runs,
        "hardware": data.hardware(),
        "libraries": data.library_versions(),
        "bootstrap": f"{params.report.bootstrap} resamples, {100 * params.report.ci:.0f}% percentile interval",
    }


def _run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the profile's experiment with the columns worth a glance (``reports/tables/runs.csv``)."""
    cols = [c for c in ("run_id", "tags.mlflow.runName", "tags.role", "tags.model", "tags.seed", "status",
                        "metrics.MDIR/psnr", "metrics.MDIR/ssim", "metrics.MDIR/haze_rain_noise/psnr",
                        "metrics.rain100h/psnr_y", "metrics.sots-indoor/psnr") if c in runs.columns]
    if not len(runs):
        return pd.DataFrame(columns=["run_id"])
    return runs[cols].rename(columns=lambda c: c.replace("tags.", "").replace("metrics.", ""))


def page_context(params: Params, prov: dict[str, Any], tabs: dict[str, pd.DataFrame], ledger: pd.DataFrame,
                 consistency: pd.DataFrame, figures: dict[str, Rendered], extra: dict[str, Any],
                 runs: pd.DataFrame, run_table: pd.DataFrame, ran: list[str], missing: list[str],
                 sensitivity: pd.DataFrame | None = None) -> dict[str, Any]:
    """Everything templates/report.html.j2 renders, as view models (pipelines.reporting.page)."""
    links = page.run_links(runs, params.report.mlflow_ui)
    return {
        "profile": params.profile,
        "provenance": page.provenance_view(prov, links),
        "ran": ran,
        "missing": missing,
        "verdicts": ledger["verdict"].value_counts().to_dict(),
        "inconsistent_checks": int((consistency["result"] == claims_mod.INCONSISTENT).sum()),
        "inconsistent_claims": int((ledger["internal_consistency"] == claims_mod.INCONSISTENT).sum()),
        "claims": page.claims_view(ledger),
        "rules": list(claims_mod.RULES.values()),
        "tables": page.table_views(tabs),
        "consistency_bad": page.simple_view(consistency[consistency["result"] != claims_mod.CONSISTENT], "result"),
        "consistency_all": page.simple_view(consistency, "result"),
        "silhouette": extra.get("silhouette") or {},
        "sensitivity": page.simple_view(sensitivity if sensitivity is not None else pd.DataFrame()),
        "figures": page.figure_views(figures),
        "mlflow_ui": params.report.mlflow_ui,
        "runs": page.simple_view(run_table, links=links),
    }


def build_report(params: Params, out: Path, eval_dir: Path, train_dir: Path, data_dir: Path,
                 profile_path: Path, latency_path: Path | None = None, log_paper: bool = True) -> dict[str, Any]:
    """Write every table, figure and the HTML page; return a summary.

    ``tables/`` and ``figures/`` (the stage's DVC outputs) are a pure function of the declared inputs: the
    same bytes on every run. What changes from run to run (MLflow run ids and links, the git commit, the
    time, the machine) goes only to ``index.html``, ``runs.csv``, ``provenance.json`` and ``summary.json``,
    which DVC does not hash.
    """
    t0 = time.perf_counter()
    models = list(params.models)
    cfg = params.report
    per_image = load_per_image(eval_dir, models, params.seeds)
    profile, machine = data.load_profile(profile_path, latency_path)
    tabs = tables.build_all(tables.Results(per_image, models, profile, params.preset, machine, cfg.bootstrap,
                                           cfg.ci))
    ledger = claims_mod.evaluate_claims(per_image, profile, cfg.bootstrap, cfg.ci)
    traj = trajectories.claim_trajectories(trajectories.load_trajectories(eval_dir, models, list(params.seeds)),
                                           claims_mod.load_claims(), cfg.bootstrap, cfg.ci)
    ledger = with_trends_and_power(ledger, traj, per_image)
    sensitivity = trajectories.sensitivity(per_image, claims_mod.load_claims(), cfg.bootstrap, cfg.ci)
    consistency = claims_mod.consistency_checks()
    t_tables = time.perf_counter() - t0
    runs = data.mlflow_runs(params.profile)
    paper_runs: dict[str, str] = {}
    if log_paper:
        from pipelines.reporting.paper_runs import log_paper_runs

        paper_runs = log_paper_runs(params.profile)
        runs = data.mlflow_runs(params.profile)
    t_mlflow = time.perf_counter() - t0 - t_tables
    prov = provenance(params, data_dir, runs, paper_runs)
    labels = {c.id: f"{c.id}: {c.model_a} - {c.model_b}" for c in claims_mod.load_claims().itertuples()}
    figures, extra = build_figures(params, per_image, profile, tabs, traj, labels, runs, eval_dir, train_dir,
                                   data_dir)
    run_table = _run_table(runs)

    # The DVC outputs: each folder built beside and swapped in whole (no stale file of an earlier run survives,
    # and a failure or kill leaves the previous folder; dvc.yaml keeps them in place: persist: true).
    with atomic_dir(out / "tables") as built:
        for name, df in tabs.items():
            write_text(built / f"{name}.csv", df.to_csv(index=False))
        write_text(built / "claims.csv", ledger.to_csv(index=False))
        write_text(built / "paper_consistency.csv", consistency.to_csv(index=False))
        write_text(built / "claim_trajectories.csv", traj.to_csv(index=False))
        write_text(built / "sensitivity.csv", sensitivity.to_csv(index=False))
    with atomic_dir(out / "figures") as built:
        for name, fig in figures.items():
            write_bytes(built / f"{name}.{fig.fmt}", fig.data)
    write_text(out / "runs.csv", run_table.to_csv(index=False))
    write_text(out / "provenance.json", json.dumps(prov, indent=2))

    ran = sorted(set(per_image["model"])) if len(per_image) else []
    missing = [m for m in models if m not in ran]
    context = page_context(params, prov, tabs, ledger, consistency, figures, extra, runs, run_table, ran, missing,
                           sensitivity)
    write_text(out / "index.html", page.render(context))
    summary = {"profile": params.profile, "models_with_results": ran, "not_run": missing,
               "claims": context["verdicts"], "figures": sorted(figures), "tables": sorted(table_files()),
               "seconds": time.perf_counter() - t0, "seconds_tables": t_tables, "seconds_mlflow": t_mlflow,
               "seconds_figures": extra["timings"]}
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary

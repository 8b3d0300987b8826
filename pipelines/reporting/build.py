"""The report (the ``report`` stage's library): paper vs reproduced tables, claims ledger, figures.

Reads the per-image results (``results/eval/<model>-s<seed>/per_image.csv``), ``results/profile.json``,
the MLflow runs of the profile (run ids, training curves) and the trained checkpoints (t-SNE,
masks, iterates); writes ``reports/tables/*.csv``, ``reports/figures/*.png`` and one
self-contained ``reports/index.html`` (images embedded as base64). Paper numbers come only
from ``pipelines/reference``; tables are built in :mod:`pipelines.reporting.tables`, figures in
:mod:`pipelines.reporting.figures`, the claims ledger in :mod:`pipelines.reporting.claims`.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.common import env, tracking
from pipelines.common.config import Params
from pipelines.common.files import write_text
from pipelines.reporting import claims as claims_mod
from pipelines.reporting import figures as figs
from pipelines.reporting import inputs as data
from pipelines.reporting import tables
from pipelines.reporting.inputs import load_per_image

TABLE_FILES = (*tables.TITLES, "claims", "paper_consistency", "runs")
FIGURES = ("resources", "psnr_vs_level", "tsne", "visual_mdir", "masks", "iterates", "training")

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1250px;color:#222}
h1{margin-bottom:4px} h2{border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:34px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ccc;padding:2px 5px;text-align:right;vertical-align:top} table.wide{font-size:11px}
th{background:#f1f1f1} td.l,th.l{text-align:left}
tr.paper td{color:#555} tr.sep td{border-top:2px solid #888}
.s-reproduced{color:#0a5} .s-not-run{color:#c60;font-weight:bold} .s-paper-only{color:#777;font-style:italic}
.s-not-available{color:#a70}
.v-holds,.v-consistent{background:#dfd} .v-does-not-hold,.v-inconsistent{background:#fdd}
.v-inconclusive-at-this-scale{background:#ffd} .v-not-run{background:#fec}
.note{font-size:12px;color:#555} figure{margin:12px 0} figcaption{font-size:12px;color:#444;max-width:1100px}
img{max-width:100%} .prov td{text-align:left}
table.wide td{white-space:nowrap} table.wide td.note{white-space:normal;min-width:220px}
"""


def _f(v: Any, nd: int = 2) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "–" if not math.isfinite(float(v)) else f"{v:.{nd}f}"
    return html.escape(str(v)) if v is not None else "–"


def _digits(metric: str) -> int:
    if metric == "params_m":
        return 1
    return 3 if "ssim" in metric or metric in ("time_s",) or metric.startswith("time_s") else 2


def _ci(lo: float, hi: float, nd: int) -> str:
    return "–" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.{nd}f}, {hi:.{nd}f}]"


def _status_cell(s: str) -> str:
    return f'<td class="l s-{s.replace(" ", "-")}">{html.escape(s)}</td>'


def render_wide(df: pd.DataFrame, keys: list[str], notes: bool = True) -> str:
    """Tables 1-3: per method a paper line and, for harness models, ours / delta / CI lines; cells PSNR / SSIM.

    ``notes=False`` leaves out the note column (the caller lists the notes under the table).
    """
    metrics = list(dict.fromkeys(df["metric"]))
    notes = notes and bool((df["note"] != "").any())
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    out = [f'<table class="wide"><tr><th class="l">method</th><th class="l">line</th>{head}<th class="l">status</th>'
           + ('<th class="l">note</th>' if notes else "") + "</tr>"]
    for method in dict.fromkeys(df["method"]):
        g = df[df["method"] == method]
        status = ", ".join(dict.fromkeys(g["status"]))
        note_text = "; ".join(n for n in dict.fromkeys(g["note"]) if n)

        def cell(key: str, fn: Callable[[pd.Series], str], g: pd.DataFrame = g) -> str:
            rows = g[g["key"] == key]
            parts = [fn(rows[rows["metric"] == m].iloc[0]) if (rows["metric"] == m).any() else "–" for m in metrics]
            return "<td>" + " / ".join(p for p in parts if p) + "</td>"

        def nd(r: pd.Series) -> int:
            return _digits(r["key"] if r["metric"] == "value" else r["metric"])

        lines = [("paper", lambda r: _f(r["paper"], nd(r)))]
        if g["model"].iloc[0]:
            lines += [("ours", lambda r: _f(r["ours"], nd(r))),
                      ("Δ ours − paper", lambda r: _f(r["delta"], nd(r))),
                      ("95% CI (ours)", lambda r: _ci(r["ci_low"], r["ci_high"], nd(r)))]
            if len(metrics) > 1:  # CI line: first metric (PSNR) only, to keep the table narrow; all in the CSV
                lines[-1] = (f"95% CI (ours, {metrics[0].upper()})",
                             lambda r: _ci(r["ci_low"], r["ci_high"], nd(r)) if r["metric"] == metrics[0] else "")
        for i, (line, fn) in enumerate(lines):
            cls = "sep" if i == 0 else ""
            label = f"{html.escape(method)}" + (f" <i>({html.escape(g['model'].iloc[0])})</i>"
                                                  if g["model"].iloc[0] else "")
            note_cell = f'<td class="l note">{html.escape(note_text)}</td>' if notes else ""
            tail = (_status_cell(status) + note_cell) if i == 0 else "<td></td>" + ("<td></td>" if notes else "")
            out.append(f'<tr class="{cls} {"paper" if line == "paper" else ""}"><td class="l">'
                       f'{label if i == 0 else ""}</td><td class="l">{line}</td>'
                       + "".join(cell(k, fn) for k in keys) + tail + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_long(df: pd.DataFrame) -> str:
    """Tables 4, 5, 7, 8: one row per (method, metric)."""
    out = ['<table><tr><th class="l">method</th><th class="l">model</th><th class="l">metric</th><th>paper</th>'
           '<th>ours</th><th>Δ ours − paper</th><th>95% CI (ours)</th><th>images × seeds</th>'
           '<th class="l">status</th><th class="l">note</th></tr>']
    prev = None
    for _, r in df.iterrows():
        nd = _digits(r["metric"])
        sep = "sep" if r["method"] != prev else ""
        prev = r["method"]
        n = f"{r['n_images']} × {r['n_seeds']}" if r["n_images"] else "–"
        out.append(f'<tr class="{sep}"><td class="l">{html.escape(r["method"])}</td><td class="l">'
                   f'{html.escape(r["model"]) or "–"}</td><td class="l">{html.escape(r["metric"])}</td>'
                   f'<td>{_f(r["paper"], nd)}</td><td>{_f(r["ours"], nd)}</td><td>{_f(r["delta"], nd)}</td>'
                   f'<td>{_ci(r["ci_low"], r["ci_high"], nd)}</td><td>{n}</td>{_status_cell(r["status"])}'
                   f'<td class="l note">{html.escape(r["note"])}</td></tr>')
    out.append("</table>")
    return "\n".join(out)


def render_claims(df: pd.DataFrame) -> str:
    out = ['<table><tr><th class="l">id</th><th class="l">claim (paper text)</th><th class="l">source</th>'
           '<th>paper</th><th>ours</th><th>95% CI (ours)</th><th class="l">verdict</th><th class="l">detail</th>'
           '<th>paper tables give</th><th class="l">internal consistency</th></tr>']
    for _, r in df.iterrows():
        v = r["verdict"]
        ic = r["internal_consistency"]
        out.append(
            f'<tr><td class="l">{html.escape(r["id"])}</td><td class="l">{html.escape(r["claim"])}</td>'
            f'<td class="l">{html.escape(r["source"])}</td><td>{_f(r["paper_value"], 3)}</td>'
            f'<td>{_f(r["ours"], 3)}</td><td>{_ci(r["ci_low"], r["ci_high"], 3)}</td>'
            f'<td class="l v-{v.replace(" ", "-")}">{html.escape(v)}</td>'
            f'<td class="l note">{html.escape(r["detail"])}</td><td>{_f(r["paper_tables_value"], 3)}</td>'
            f'<td class="l v-{ic}">{html.escape(ic) or "–"}</td></tr>')
    out.append("</table>")
    return "\n".join(out)


def render_simple(df: pd.DataFrame, cls_col: str | None = None) -> str:
    out = ["<table><tr>" + "".join(f'<th class="l">{html.escape(c)}</th>' for c in df.columns) + "</tr>"]
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            klass = f' class="l v-{str(v).replace(" ", "-")}"' if c == cls_col else ' class="l"'
            cells.append(f"<td{klass}>{_f(v, 3)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


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


def _sdir_pairs(params: Params) -> dict[str, dict[str, Any]]:
    """{set name: {image id: pair}} of the SDIR sets under the data root (none without one)."""
    from pipelines.data import sdir
    from pipelines.data.sources import resolve_data_root

    try:
        root = resolve_data_root(None, params.data.root)
    except env.UserError:
        return {}
    if root is None:
        return {}
    out = {}
    for name, folder in sdir.find_sdir_sets(root).items():
        try:
            out[name] = {p.name: p for p in sdir.load_pairs(name, folder)}
        except env.UserError:
            continue
    return out


def build_figures(params: Params, per_image: pd.DataFrame, profile: dict, tabs: dict[str, pd.DataFrame],
                  runs: pd.DataFrame, eval_dir: Path, train_dir: Path, data_dir: Path) -> tuple[dict, dict]:
    """{figure name: (png bytes, caption)} and extra numbers (t-SNE silhouettes)."""
    from pipelines.data.manifest import read_manifest

    models = list(params.models)
    seed = params.seeds[0]
    out: dict[str, tuple[bytes, str]] = {}
    extra: dict[str, Any] = {}
    try:
        test_pairs = read_manifest(data_dir, "test")
    except env.UserError:
        test_pairs = []

    timings: dict[str, float] = {}
    t_last = [time.perf_counter()]

    def put(name: str, fig: Any, caption: str) -> None:
        if fig is not None:
            out[name] = (figs.png_bytes(fig), caption)
        now = time.perf_counter()
        timings[name] = round(now - t_last[0], 2)
        t_last[0] = now

    put("resources", figs.fig_resources(tabs["table8_resources"], profile, per_image, models),
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
    put("visual_mdir", figs.fig_visual("MDIR", samples, models, eval_dir, seed) if samples else None,
        "MDIR test images: degraded input, each model's restoration (saved by the evaluate stage), ground truth.")
    for set_name, pairs in _sdir_pairs(params).items():
        s = _samples(per_image, models, seed, eval_dir, set_name, pairs, lambda p: p.name)
        if s:
            put(f"visual_{set_name}", figs.fig_visual(set_name, s, models, eval_dir, seed),
                f"Real {set_name} pairs (subset under the data root): input, each model, ground truth.")
    net = figs.load_checkpoint(train_dir, "interir", seed) if "interir" in models else None
    if net is not None and test_pairs:
        hrn = [p for p in test_pairs if p.combination == "haze+rain+noise"] or test_pairs
        put("masks", figs.fig_masks(net, hrn[0]),
            "InterIR's explainable convolutions (Eq. 16): the binary activation mask M = 1[x >= tau] of a few "
            "layers for one test input, as the fraction of channels active at each pixel of the feature grid.")
        its_pairs = [p for c in by_comb.values() for p in c[:2]]
        put("iterates", figs.fig_iterates(net, its_pairs, "InterIR"),
            "The unfolding made visible: the image estimate x_k after stages k of the trained InterIR, and the "
            "PSNR of every iterate (grey: single images, red: mean).")
    train_runs = data.latest_runs(runs, models, params.seeds)
    ids = {f"{r['tags.model']} s{r['tags.seed']}": r["run_id"] for _, r in train_runs.iterrows()}
    put("training", figs.fig_training(data.loss_history(ids)),
        "Training loss per run, read from MLflow (train/loss, logged every train.log_every steps).")
    extra["timings"] = timings
    return out, extra


def _html_figures(figures: dict[str, tuple[bytes, str]]) -> list[str]:
    body = []
    for name, (png, caption) in figures.items():
        b64 = base64.b64encode(png).decode()
        body.append(f'<figure id="fig-{name}"><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
                    f"<figcaption><b>{html.escape(name)}</b>: {html.escape(caption)}</figcaption></figure>")
    return body


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


def _prov_html(prov: dict[str, Any]) -> str:
    rows = []
    for k, v in prov.items():
        if isinstance(v, dict) and len(v) > 3:
            items = "<br>".join(f"{html.escape(str(a))}: {html.escape(str(b))}" for a, b in v.items())
            cell = f"<details><summary>{len(v)} entries</summary>{items}</details>"
        elif isinstance(v, dict):
            cell = html.escape(", ".join(f"{a}={b}" for a, b in v.items()) or "(none)")
        elif isinstance(v, list):
            cell = html.escape(", ".join(map(str, v)))
        else:
            cell = html.escape(str(v))
        rows.append(f'<tr><th class="l">{html.escape(k)}</th><td>{cell}</td></tr>')
    return '<table class="prov">' + "".join(rows) + "</table>"


def build_report(params: Params, out: Path, eval_dir: Path, train_dir: Path, data_dir: Path,
                 profile_path: Path, log_paper: bool = True) -> dict[str, Any]:
    """Write every table, figure and the HTML page; return a summary."""
    t0 = time.perf_counter()
    models = list(params.models)
    cfg = params.report
    per_image = load_per_image(eval_dir, models, params.seeds)
    profile = data.load_profile(profile_path)
    machine = data.hardware().split(";")[0]
    tabs = tables.build_all(per_image, models, profile, params.preset, machine, cfg.bootstrap, cfg.ci)
    ledger = claims_mod.evaluate_claims(per_image, profile, cfg.bootstrap, cfg.ci)
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
    figures, extra = build_figures(params, per_image, profile, tabs, runs, eval_dir, train_dir, data_dir)

    run_cols = [c for c in ("run_id", "tags.mlflow.runName", "tags.role", "tags.model", "tags.seed", "status",
                            "metrics.MDIR/psnr", "metrics.MDIR/ssim", "metrics.MDIR/haze_rain_noise/psnr",
                            "metrics.rain100h/psnr_y", "metrics.sots-indoor/psnr") if c in runs.columns]
    run_table = runs[run_cols].rename(columns=lambda c: c.replace("tags.", "").replace("metrics.", "")) \
        if len(runs) else pd.DataFrame(columns=["run_id"])

    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name, df in tabs.items():
        write_text(out / "tables" / f"{name}.csv", df.to_csv(index=False))
    write_text(out / "tables" / "claims.csv", ledger.to_csv(index=False))
    write_text(out / "tables" / "paper_consistency.csv", consistency.to_csv(index=False))
    write_text(out / "tables" / "runs.csv", run_table.to_csv(index=False))
    for name, (png, _) in figures.items():
        (out / "figures" / f"{name}.png").write_bytes(png)
    write_text(out / "provenance.json", json.dumps(prov, indent=2))

    counts = ledger["verdict"].value_counts().to_dict()
    ran = sorted(set(per_image["model"])) if len(per_image) else []
    missing = [m for m in models if m not in ran]
    body = [
        "<h1>interir-bench report</h1>",
        f'<p class="note">InterIR (arXiv 2511.10166) reproduced at the <b>{html.escape(params.profile)}</b> '
        "profile. Numbers labelled <i>paper</i> are quoted from the paper (pipelines/reference); every other "
        "number was computed by this pipeline. At the smoke and small profiles the models are much smaller and "
        "trained far shorter than the paper's, so absolute PSNR is not comparable; the claims ledger tests the "
        "direction of the paper's comparisons.</p>",
        "<h2>Provenance</h2>", _prov_html(prov),
        "<h2>Summary</h2>",
        f"<p>Models with results: {html.escape(', '.join(ran) or 'none')}."
        + (f' <span class="s-not-run">Not run: {html.escape(", ".join(missing))}.</span>' if missing else "")
        + "</p><p>Claims: " + ", ".join(f"{html.escape(k)}: {v}" for k, v in counts.items()) + ". Paper "
        f"internal consistency: {int((consistency['result'] == 'inconsistent').sum())} of {len(consistency)} "
        "generated checks and "
        f"{int((ledger['internal_consistency'] == 'inconsistent').sum())} text claims inconsistent.</p>",
        '<h2 id="claims">Claims ledger</h2>', render_claims(ledger),
        '<p class="note"><b>Verdict rules.</b> ' + " ".join(html.escape(v) for v in claims_mod.RULES.values())
        + "</p>",
    ]
    for name, title in tables.TITLES.items():
        df = tabs[name]
        body.append(f'<h2 id="{name}">{html.escape(title)}</h2>')
        if name in ("table1_mdir", "table2_dehaze", "table3_derain_y"):
            keys = list(dict.fromkeys(df["key"]))
            body.append(render_wide(df, keys))
        elif name == "table8_resources":  # one column per quantity
            wide = df.assign(key=df["metric"], metric="value")
            body.append(render_wide(wide, list(dict.fromkeys(wide["key"])), notes=False))
            body.append("<ul class='note'>" + "".join(f"<li>{html.escape(n)}</li>"
                                                     for n in dict.fromkeys(df["note"]) if n) + "</ul>")
        else:
            body.append(render_long(df))
    body.append('<p class="note">Δ = ours − paper. CI: percentile bootstrap over test images (paired between '
                "models for gains) and over seeds when a model has several. Table 4 and Table 5 use the "
                "haze+rain+noise column of Table 1, Tables 7 and 8 the seven-combination average (as the paper "
                "does).</p>")
    body.append('<h2 id="paper_consistency">The paper against itself</h2>')
    bad = consistency[consistency["result"] != "consistent"]
    if len(bad):
        body.append(render_simple(bad, "result"))
    else:
        body.append("<p>Every generated check is consistent.</p>")
    body.append(f"<details><summary>All {len(consistency)} generated checks</summary>"
                f"{render_simple(consistency, 'result')}</details>")
    body.append('<p class="note">Inconsistencies between the text and the tables are in the claims ledger '
                "(column <i>internal consistency</i>).</p>")
    body.append('<h2 id="figures">Figures</h2>')
    if extra.get("silhouette"):
        body.append("<p>t-SNE silhouette by combination (higher = better separated): " + ", ".join(
            f"{html.escape(k)} {v:.3f}" for k, v in extra["silhouette"].items()) + "</p>")
    body += _html_figures(figures)
    body.append('<h2 id="runs">MLflow runs</h2>')
    body.append(render_simple(run_table))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>interir-bench report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>")
    write_text(out / "index.html", page)
    summary = {"profile": params.profile, "models_with_results": ran, "not_run": missing, "claims": counts,
               "figures": sorted(figures), "tables": sorted(TABLE_FILES), "seconds": time.perf_counter() - t0,
               "seconds_tables": t_tables, "seconds_mlflow": t_mlflow, "seconds_figures": extra["timings"]}
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary

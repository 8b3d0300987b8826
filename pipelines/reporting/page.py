"""The HTML page: view models of the report's tables and the Jinja2 template that renders them.

``templates/report.html.j2`` holds the page (inline CSS, images as data URIs, no scripts, no
network); this module turns the report's DataFrames into rows of formatted cells (numbers
rounded per metric, intervals, status classes, links to the MLflow UI) so that the template
only lays them out. The template autoescapes: every string here is plain text.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipelines.reporting import specs
from pipelines.reporting.figures import Rendered

TEMPLATE = "report.html.j2"
MIME = {"png": "image/png", "jpg": "image/jpeg"}


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, an optional CSS class and an optional link."""

    text: str
    cls: str = ""
    href: str = ""


def num(v: Any, nd: int = 2) -> str:
    """A number with ``nd`` decimals ("–" for NaN); anything else as text."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "–" if not math.isfinite(float(v)) else f"{v:.{nd}f}"
    return str(v) if v is not None else "–"


def interval(lo: float, hi: float, nd: int) -> str:
    """A bootstrap interval as ``[lo, hi]`` ("–" when there is none, e.g. one test image)."""
    return "–" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.{nd}f}, {hi:.{nd}f}]"


def digits(metric: str) -> int:
    """Decimals a metric is shown with: as the paper prints it (SSIM and seconds 3, parameters in M 1, else 2)."""
    if metric == "params_m":
        return 1
    return 3 if "ssim" in metric or metric.startswith("time_s") else 2


def css_class(prefix: str, value: str) -> str:
    """``s-not-run`` for status "not run": the template's colour classes."""
    return f"{prefix}-{re.sub(r'[^a-z0-9]+', '-', value.lower()).strip('-')}" if value else ""


def run_link(base: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI at ``base`` (report.mlflow_ui)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def run_links(runs: pd.DataFrame, base: str) -> dict[str, str]:
    """{run id: MLflow UI link} of every run in ``runs`` (an ``mlflow.search_runs`` frame)."""
    if runs.empty or not {"run_id", "experiment_id"} <= set(runs.columns):
        return {}
    return {r["run_id"]: run_link(base, r["experiment_id"], r["run_id"]) for _, r in runs.iterrows()}


# --------------------------------------------------------------------------- tables


def wide_view(df: pd.DataFrame, notes: bool = True) -> dict[str, Any]:
    """Per method a paper line and, for harness models, ours / delta / CI lines; one column per key.

    A cell joins the metrics of its key (PSNR / SSIM). The CI line shows the first metric only, to keep
    the table narrow (all intervals are in the CSV). ``notes=False`` leaves out the note column.
    """
    keys = list(dict.fromkeys(df["key"]))
    metrics = list(dict.fromkeys(df["metric"]))
    notes = notes and bool((df["note"] != "").any())

    def nd(r: pd.Series) -> int:
        return digits(r["key"] if r["metric"] == "value" else r["metric"])

    def ci_first(r: pd.Series) -> str:
        return interval(r["ci_low"], r["ci_high"], nd(r)) if r["metric"] == metrics[0] else ""

    ci_line = ("95% CI (ours)", lambda r: interval(r["ci_low"], r["ci_high"], nd(r)))
    if len(metrics) > 1:
        ci_line = (f"95% CI (ours, {metrics[0].upper()})", ci_first)
    methods = []
    for method in dict.fromkeys(df["method"]):
        g = df[df["method"] == method]
        model = g["model"].iloc[0]
        lines: list[tuple[str, Callable[[pd.Series], str]]] = [("paper", lambda r: num(r["paper"], nd(r)))]
        if model:
            lines += [("ours", lambda r: num(r["ours"], nd(r))),
                      ("Δ ours − paper", lambda r: num(r["delta"], nd(r))), ci_line]

        def cell(key: str, fn: Callable[[pd.Series], str], g: pd.DataFrame = g) -> str:
            rows = g[g["key"] == key]
            parts = [fn(rows[rows["metric"] == m].iloc[0]) if (rows["metric"] == m).any() else "–" for m in metrics]
            return " / ".join(p for p in parts if p)

        status = ", ".join(dict.fromkeys(g["status"]))
        methods.append({"method": method, "model": model, "status": status, "status_cls": css_class("s", status),
                        "note": "; ".join(n for n in dict.fromkeys(g["note"]) if n),
                        "lines": [{"name": name, "cells": [cell(k, fn) for k in keys]} for name, fn in lines]})
    return {"columns": keys, "notes": notes, "methods": methods, "footnotes": []}


def quantities_view(df: pd.DataFrame) -> dict[str, Any]:
    """A resources table as a wide table with one column per metric; its notes listed under it."""
    view = wide_view(df.assign(key=df["metric"], metric="value"), notes=False)
    view["footnotes"] = [n for n in dict.fromkeys(df["note"]) if n]
    return view


def long_view(df: pd.DataFrame) -> dict[str, Any]:
    """One row per (method, metric); a separator line where the method changes."""
    rows, prev = [], None
    for _, r in df.iterrows():
        nd = digits(r["metric"])
        rows.append({"sep": r["method"] != prev, "method": r["method"], "model": r["model"] or "–",
                     "metric": r["metric"], "paper": num(r["paper"], nd), "ours": num(r["ours"], nd),
                     "delta": num(r["delta"], nd), "ci": interval(r["ci_low"], r["ci_high"], nd),
                     "n": f"{r['n_units']} {r['ci_unit'].split(' and ')[0]}s / {r['n_images']} × {r['n_seeds']}"
                     if r["n_images"] and r["ci_unit"] else f"{r['n_images']} × {r['n_seeds']}" if r["n_images"]
                     else "–",
                     "status": r["status"], "status_cls": css_class("s", r["status"]), "note": r["note"]})
        prev = r["method"]
    return {"rows": rows}


VIEWS: dict[str, Callable[[pd.DataFrame], dict[str, Any]]] = {
    specs.WIDE: wide_view,
    specs.QUANTITIES: quantities_view,
    specs.LONG: long_view,
}


def table_views(tabs: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """The reported tables in the registry's order, each with its anchor, title, layout and view."""
    return [{"anchor": spec.csv, "title": spec.title, "layout": spec.layout, "view": VIEWS[spec.layout](tabs[spec.csv])}
            for spec in specs.reported_tables()]


def claims_view(ledger: pd.DataFrame) -> list[dict[str, Any]]:
    """The claims ledger's rows with formatted numbers and verdict colour classes."""
    return [{"id": r["id"], "claim": r["claim"], "source": r["source"], "paper": num(r["paper_value"], 3),
             "ours": num(r["ours"], 3), "ci": interval(r["ci_low"], r["ci_high"], 3), "ci_unit": r["ci_unit"] or "–",
             "verdict": r["verdict"], "trend": r.get("trend", ""), "to_decide": r.get("to_decide", ""),
             "verdict_cls": css_class("v", r["verdict"]), "detail": r["detail"],
             "paper_tables": num(r["paper_tables_value"], 3), "consistency": r["internal_consistency"] or "–",
             "consistency_cls": css_class("v", r["internal_consistency"])}
            for _, r in ledger.iterrows()]


def simple_view(df: pd.DataFrame, cls_col: str = "", links: dict[str, str] | None = None) -> dict[str, Any]:
    """Every column as text (numbers with 3 decimals); ``cls_col`` values colour their cell, run ids link."""
    links = links or {}
    rows = [[Cell(num(r[c], 3), css_class("v", str(r[c])) if c == cls_col else "",
                  links.get(str(r[c]), "") if c == "run_id" else "") for c in df.columns]
            for _, r in df.iterrows()]
    return {"columns": list(df.columns), "rows": rows}


# --------------------------------------------------------------------------- provenance and figures


def provenance_view(prov: dict[str, Any], links: dict[str, str]) -> list[dict[str, Any]]:
    """Provenance rows; mappings become items (run ids link to the MLflow UI), long ones collapsed."""
    rows = []
    for key, value in prov.items():
        if isinstance(value, dict):
            items = [Cell(f"{label}: {v}", href=links.get(str(v).split(" ")[0], "")) for label, v in value.items()]
            rows.append({"key": key, "entries": items or [Cell("(none)")], "collapsed": len(items) > 3})
        else:
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            rows.append({"key": key, "entries": [Cell(text)], "collapsed": False})
    return rows


def figure_views(figures: dict[str, Rendered]) -> list[dict[str, Any]]:
    """The figures with their anchors and data URIs (the page embeds them: no files next to it needed)."""
    return [{"anchor": f"fig-{name}", "name": name, "caption": f.caption,
             "src": f"data:{MIME[f.fmt]};base64,{base64.b64encode(f.data).decode()}"}
            for name, f in figures.items()]


def render(context: dict[str, Any]) -> str:
    """The page from ``templates/report.html.j2`` and ``context`` (:func:`pipelines.reporting.build.page_context`).

    Autoescaped (the view models hold plain text); a name the template uses but the context lacks is an error.
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("pipelines.reporting", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**context)

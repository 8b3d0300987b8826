"""DVC stage ``report``: paper vs reproduced tables and figures in ``reports/index.html``.

Thin first version (walking skeleton): Table 1 (MDIR, per combination) for the models the
pipeline trained, next to the paper's numbers, with a bootstrap 95% CI over test images,
and one figure. The full report (all tables, claims ledger) builds on this module.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import env
from pipelines.config import load_params
from pipelines.imageio import write_text
from pipelines.paper_map import PAPER_ROWS
from pipelines.train import run_name


def reference_table(name: str) -> pd.DataFrame:
    """A paper table from the packaged reference CSVs (numbers quoted from the paper)."""
    with resources.files("pipelines.reference").joinpath(f"{name}.csv").open() as fh:
        return pd.read_csv(fh)


def bootstrap_ci(values: np.ndarray, n: int, ci: float, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or n <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


def load_per_image(eval_dir: Path, models: tuple[str, ...], seeds: tuple[int, ...]) -> pd.DataFrame:
    frames = []
    for m in models:
        for s in seeds:
            f = eval_dir / run_name(m, s) / "per_image.csv"
            if f.is_file():
                df = pd.read_csv(f)
                df["model"], df["seed"] = m, s
                frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def table1(per_image: pd.DataFrame, models: tuple[str, ...], n_boot: int, ci: float) -> pd.DataFrame:
    paper = reference_table("table1_mdir")
    rows = []
    combos = list(paper["combination"].unique())
    for m in models:
        label = dict(PAPER_ROWS.get(m, ())).get("table1", m)
        sel = per_image[(per_image["model"] == m) & (per_image["set"] == "MDIR")] if len(per_image) else per_image
        for c in combos:
            pref = paper[(paper["method"] == label) & (paper["combination"] == c)]
            ours = sel if c == "average" else sel[sel["combination"] == c] if len(sel) else sel
            if len(ours):
                lo, hi = bootstrap_ci(ours["psnr"].to_numpy(), n_boot, ci)
                val, status = float(ours["psnr"].mean()), "reproduced"
                ssim = float(ours["ssim"].mean())
            else:
                lo = hi = val = ssim = float("nan")
                status = "not run"
            p_psnr = float(pref["psnr"].iloc[0]) if len(pref) else float("nan")
            p_ssim = float(pref["ssim"].iloc[0]) if len(pref) else float("nan")
            rows.append({"model": m, "paper_row": label, "combination": c, "psnr_paper": p_psnr,
                         "psnr_ours": val, "delta_db": val - p_psnr, "ci_low": lo, "ci_high": hi,
                         "ssim_paper": p_ssim, "ssim_ours": ssim, "status": status})
    return pd.DataFrame(rows)


def _figure_png(t1: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = t1.melt(id_vars=["model", "combination"], value_vars=["psnr_paper", "psnr_ours"],
                   var_name="source", value_name="psnr")
    long["source"] = long["source"].map({"psnr_paper": "paper", "psnr_ours": "reproduced"})
    fig, ax = plt.subplots(figsize=(9, 3.5))
    sns.barplot(data=long, x="combination", y="psnr", hue="source", ax=ax)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("MDIR PSNR per degradation combination: paper vs reproduced")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def main(argv: list[str] | None = None) -> int:
    env.apply_defaults()
    p = argparse.ArgumentParser(prog="interir-bench report", description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", choices=("smoke", "small", "paper"))
    p.add_argument("--eval-dir", default="results/eval")
    p.add_argument("--out", default="reports")
    a = p.parse_args(argv)
    params = load_params(a.params, a.profile)
    out = Path(a.out)
    per_image = load_per_image(Path(a.eval_dir), params.models, params.seeds)
    t1 = table1(per_image, params.models, params.report.bootstrap, params.report.ci)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    write_text(out / "tables" / "table1_mdir.csv", t1.to_csv(index=False))
    img = _figure_png(t1)
    body = [
        "<h1>interir-bench report</h1>",
        f"<p>Profile <b>{html.escape(params.profile)}</b>. Paper numbers are quoted from arXiv 2511.10166 "
        "(labelled <i>paper</i>); every other number was computed by this pipeline.</p>",
        "<h2>Table 1: MDIR (PSNR dB / SSIM, RGB)</h2>",
        t1.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"),
        f'<img alt="Table 1 figure" src="data:image/png;base64,{img}">',
    ]
    page = "<!doctype html><html><head><meta charset='utf-8'><title>interir-bench report</title></head><body>"
    page += "\n".join(body) + "</body></html>"
    write_text(out / "index.html", page)
    write_text(out / "summary.json", json.dumps({"profile": params.profile, "rows": len(t1)}))
    print(f"report: {out / 'index.html'}")
    return 0

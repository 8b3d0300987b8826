"""The report's figures (matplotlib/seaborn, Agg). Each builder returns a Figure, or None without data.

Figures that need a model (t-SNE of degradation embeddings, explainable-conv masks, unfolding
iterates) load the trained checkpoints ``results/train/<model>-s<seed>/model.pt`` and run them
on the MDIR test inputs on the CPU. :func:`render` turns a Figure into the bytes the report
writes and embeds: PNG for plots, JPEG for figures of photos (a tenth of the size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.manifest import COMBINATIONS
from pipelines.reporting import specs
from pipelines.reporting.inputs import reference_table

JPEG_QUALITY = 85


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Rendered:
    """A figure as written to ``reports/figures/<name>.<fmt>`` and embedded in the page."""

    data: bytes
    fmt: str  # "png" or "jpg"
    caption: str


def render(fig: Any, caption: str, photo: bool = False, dpi: int = 100) -> Rendered:
    """Save and close ``fig``: JPEG (quality JPEG_QUALITY) when it shows photos, else PNG."""
    import io

    buf = io.BytesIO()
    fmt = "jpg" if photo else "png"
    extra = {"pil_kwargs": {"quality": JPEG_QUALITY, "optimize": True}} if photo else {}
    fig.savefig(buf, format="jpeg" if photo else "png", dpi=dpi, bbox_inches="tight", **extra)
    _plt().close(fig)
    return Rendered(buf.getvalue(), fmt, caption)


# --------------------------------------------------------------------------- resources


def fig_resources(t8: pd.DataFrame, profile: dict, per_image: pd.DataFrame, models: Sequence[str]) -> Any:
    """PSNR against MACs, marker area = parameters: paper (Table 8) and reproduced (paper-preset counts)."""
    plt = _plt()
    paper = reference_table(specs.spec("table8").csv)
    ours = []
    for m in models:
        e = profile.get(m, {}).get("paper")
        sel = per_image[(per_image["model"] == m) & (per_image["set"] == "MDIR")] if len(per_image) else per_image
        if not e or sel.empty:
            continue
        ours.append({"model": m, "gmacs": e["gmacs"], "params_m": e["params"] / 1e6, "psnr": sel["psnr"].mean()})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    ax.scatter(paper["gflops"], paper["psnr"], s=paper["params_m"] * 12, alpha=0.5, color="tab:gray",
               edgecolor="k")
    for _, r in paper.iterrows():
        ax.annotate(f"{r['method']} ({r['params_m']:.0f} M)", (r["gflops"], r["psnr"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel="GFLOPs at 256x256 (paper)", ylabel="MDIR average PSNR (dB)", title="paper (Table 8)")
    ax = axes[1]
    if ours:
        o = pd.DataFrame(ours)
        ax.scatter(o["gmacs"], o["psnr"], s=np.maximum(o["params_m"], 0.3) * 12, alpha=0.6, color="tab:blue",
                   edgecolor="k")
        # models at (almost) the same point share one label
        o["pos"] = list(zip(o["gmacs"].round(0), o["psnr"].round(2)))
        for _, g in o.groupby("pos", sort=False):
            label = "\n".join(f"{r['model']} ({r['params_m']:.1f} M)" for _, r in g.iterrows())
            ax.annotate(label, (g["gmacs"].iloc[0], g["psnr"].iloc[0]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    else:
        ax.text(0.5, 0.5, "no reproduced results", ha="center", transform=ax.transAxes)
    ax.set(xlabel="GMACs at 256x256, paper preset (ours, profile.json)", ylabel="MDIR average PSNR (dB), ours",
           title="reproduced (PSNR of the pipeline-trained preset)")
    fig.suptitle("Quality against compute; marker area proportional to parameters")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- degradation level

LEVEL_UNITS = {"haze": "visibility V (m; lower = denser haze)", "rain": "streak density",
               "noise": "noise sigma (0-255)"}


def fig_levels(per_image: pd.DataFrame) -> Any:
    """PSNR against the level of each degradation, over the MDIR test images that contain it."""
    if per_image.empty:
        return None
    import seaborn as sns

    plt = _plt()
    mdir = per_image[per_image["set"] == "MDIR"]
    if mdir.empty:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    models = sorted(mdir["model"].unique())
    palette = dict(zip(models, sns.color_palette("tab10" if len(models) <= 10 else "tab20", len(models))))
    for ax, deg in zip(axes, ("haze", "rain", "noise")):
        sel = mdir[mdir["combination"].str.contains(deg, regex=False) & (mdir[deg] > 0)]
        if sel.empty:
            ax.text(0.5, 0.5, f"no {deg} images", ha="center", transform=ax.transAxes)
            continue
        sns.scatterplot(data=sel, x=deg, y="psnr", hue="model", style="combination", ax=ax, s=25, alpha=0.7,
                        palette=palette, legend=ax is axes[-1])
        for model, g in sel.groupby("model"):
            if len(g) >= 3 and g[deg].nunique() > 1:
                coef = np.polyfit(g[deg], g["psnr"], 1)
                xs = np.linspace(g[deg].min(), g[deg].max(), 20)
                ax.plot(xs, np.polyval(coef, xs), lw=1, alpha=0.7, color=palette[model])
        ax.set(xlabel=LEVEL_UNITS[deg], title=deg)
    axes[0].set_ylabel("PSNR (dB)")
    fig.suptitle("PSNR against degradation level (MDIR test images containing it; lines: least squares per model)")
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- checkpoints


def load_checkpoint(train_dir: Path, model: str, seed: int):
    """The trained model of (model, seed), in eval mode, or None when there is no checkpoint."""
    from pipelines.common.paths import run_name
    from pipelines.engine import checkpoint

    path = Path(train_dir) / run_name(model, seed) / "model.pt"
    if not path.is_file():
        return None
    _, net = checkpoint.load_model(path, expect_model=model)
    return net.eval()


def _tensor(arr: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float()


def _read(path: Path) -> np.ndarray:
    from pipelines.data.imageio import read_image

    return read_image(path)


def embeddings(net: Any, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Degradation embedding per input: mean and std over space of the last unfolding stage's image features."""
    import torch

    feats: list[torch.Tensor] = []

    def hook(_mod, _inp, out):
        x = out[0] if isinstance(out, tuple) else out
        feats.append(torch.cat([x.mean(dim=(-2, -1)), x.std(dim=(-2, -1))], dim=1))

    handle = net.stages[-1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            for arr in inputs:
                net(_tensor(arr))
    finally:
        handle.remove()
    return torch.cat(feats).numpy()


def fig_tsne(train_dir: Path, seed: int, pairs: Sequence[Any], models: Sequence[tuple[str, str]]) -> tuple[Any, dict]:
    """Paper Fig. 6: t-SNE of degradation embeddings per model, coloured by combination; silhouette per model."""
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    plt = _plt()
    nets = [(label, load_checkpoint(train_dir, m, seed)) for m, label in models]
    nets = [(label, n) for label, n in nets if n is not None and hasattr(n, "stages")]
    if not nets or len(pairs) < 4:
        return None, {}
    inputs = [_read(p.input) for p in pairs]
    combos = [p.combination for p in pairs]
    fig, axes = plt.subplots(1, len(nets), figsize=(5.5 * len(nets), 4.6), squeeze=False)
    palette = dict(zip(COMBINATIONS, plt.get_cmap("tab10").colors))
    scores = {}
    for ax, (label, net) in zip(axes[0], nets):
        emb = StandardScaler().fit_transform(embeddings(net, inputs))
        perplexity = float(max(2, min(30, (len(inputs) - 1) // 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(emb)
        labels = np.array(combos)
        sil = float(silhouette_score(emb, labels)) if len(set(combos)) > 1 else float("nan")
        scores[label] = sil
        for c in COMBINATIONS:
            sel = labels == c
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=30, color=palette[c], label=c, edgecolor="k", linewidth=0.3)
        ax.set(title=f"{label}: silhouette {sil:.2f} (by combination)", xticks=[], yticks=[])
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.suptitle(f"t-SNE of degradation embeddings ({len(inputs)} MDIR test images, perplexity "
                 f"{max(2, min(30, (len(inputs) - 1) // 3))}); paper Fig. 6")
    fig.tight_layout()
    return fig, scores


# --------------------------------------------------------------------------- visual comparison


# Visual grids are meant to be read at their native size (the page does not scale them down in a window wide
# enough): a tile of TILE_IN inches at 100 dpi is 120 px, about the 128-px samples of the smoke set. Model names
# head the columns in HEAD_PT, each row's label sits at its left in HEAD_PT, PSNRs under the tiles in PSNR_PT.
TILE_IN, HEAD_PT, PSNR_PT = 1.2, 10, 9
# Gaps (inches) between tiles, below a tile (its PSNR), and the margins for row labels and headers.
GAP_W, GAP_H, LEFT, TOP, BOTTOM = 0.05, 0.32, 0.3, 0.8, 0.3


def _tile(ax: Any, path: Path) -> None:
    """An image without ticks or frame (axis labels stay visible, unlike ``axis("off")``)."""
    if path.is_file():
        ax.imshow(_read(path))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _grid(n_rows: int, n_cols: int) -> tuple[Any, Any]:
    """A figure of n_rows x n_cols square tiles of exactly TILE_IN inches (sized so imshow does not shrink them)."""
    width = LEFT + n_cols * TILE_IN + (n_cols - 1) * GAP_W + 0.05
    height = TOP + n_rows * TILE_IN + (n_rows - 1) * GAP_H + BOTTOM
    return _plt().subplots(n_rows, n_cols, figsize=(width, height), squeeze=False, gridspec_kw={
        "left": LEFT / width, "right": 1 - 0.05 / width, "top": 1 - TOP / height, "bottom": BOTTOM / height,
        "wspace": GAP_W / TILE_IN, "hspace": GAP_H / TILE_IN})


def _header(name: str) -> str:
    """A column header that fits a tile: compound model names on two lines (``deepsn_`` / ``xconv``)."""
    return name.replace("_", "_\n", 1)


def fig_visual(title: str, set_name: str, samples: list[dict], models: Sequence[str], eval_dir: Path,
               seed: int) -> Any:
    """Grid of test images: input, each model's saved restoration, ground truth; one row per sample.

    Model names head the columns once, each row's label (its combination or image name) sits once at its
    left, and every restoration has its PSNR under it (the row's best in bold). ``samples`` items:
    ``{"index", "input", "target", "label", "psnr": {model: value}}``.
    """
    from pipelines.common.paths import run_name

    have = [m for m in models if (Path(eval_dir) / run_name(m, seed) / "samples" / f"{set_name}_000.png").is_file()]
    cols = ["input", *have, "ground truth"]
    rows = [s for s in samples if Path(s["input"]).is_file()]
    if not rows:
        return None
    fig, axes = _grid(len(rows), len(cols))
    for r, s in enumerate(rows):
        shown = {m: round(s["psnr"].get(m, float("nan")), 2) for m in have}  # as printed: ties are ties
        best = max((v for v in shown.values() if math.isfinite(v)), default=float("nan"))
        for c, col in enumerate(cols):
            ax = axes[r][c]
            if col == "input":
                _tile(ax, Path(s["input"]))
                ax.set_ylabel(s["label"], fontsize=HEAD_PT)
            elif col == "ground truth":
                _tile(ax, Path(s["target"]))
            else:
                _tile(ax, Path(eval_dir) / run_name(col, seed) / "samples" / f"{set_name}_{s['index']:03d}.png")
                p = shown[col]
                ax.set_xlabel(f"{p:.2f} dB" if math.isfinite(p) else "not run", fontsize=PSNR_PT,
                              fontweight="bold" if p == best else "normal")
            if r == 0:
                ax.set_title(_header(col), fontsize=HEAD_PT, fontweight="bold")
    fig.suptitle(f"{title} (PSNR of each restoration under it; the best of a row in bold)", fontsize=11)
    return fig


# --------------------------------------------------------------------------- interpretability


def _spread(n: int, k: int) -> list[int]:
    """Up to ``k`` indices spread evenly over ``range(n)``, first and last included."""
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, min(k, n))})


def fig_masks(net: Any, pair: Any, max_layers: int = 4) -> Any:
    """Explainable-conv masks (Eq. 16) of a few layers for one input: the fraction of active channels per pixel."""
    from interir.xconv import collect_masks

    plt = _plt()
    x = _tensor(_read(pair.input))
    masks = collect_masks(net, x)
    if not masks:
        return None
    picks = _spread(len(masks), max_layers)
    fig, axes = plt.subplots(1, len(picks) + 1, figsize=(2.8 * (len(picks) + 1), 3.0))
    axes[0].imshow(_read(pair.input))
    axes[0].set_title(f"input ({pair.combination})", fontsize=8)
    axes[0].axis("off")
    for ax, i in zip(axes[1:], picks):
        m = masks[i]
        frac = m["mask"][0].float().mean(dim=0).numpy()
        im = ax.imshow(frac, cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"{m['name']}\nmean active {frac.mean():.2f}", fontsize=7)
        ax.axis("off")
    fig.colorbar(im, ax=axes[1:].tolist(), shrink=0.8, label="fraction of channels with x >= tau")
    fig.suptitle(f"Explainable convolution masks M = 1[x >= tau] ({len(masks)} layers; {len(picks)} shown)",
                 fontsize=10)
    return fig


def fig_iterates(net: Any, pairs: Sequence[Any], label: str, max_show: int = 6) -> Any:
    """Per-stage iterates of the unfolding for one input, and PSNR per stage over the test images."""
    import torch

    def psnr_fn(a: torch.Tensor, b: torch.Tensor) -> float:
        mse = float(((torch.round(a * 255) - torch.round(b * 255)) ** 2).mean()) / 255.0**2
        return 10 * math.log10(1.0 / max(mse, 1e-10))

    plt = _plt()
    curves = []
    first = None
    with torch.no_grad():
        for i, p in enumerate(pairs):
            x, y = _tensor(_read(p.input)), _tensor(_read(p.target))
            out = net(x, return_intermediates=True)
            its = [t.clamp(0, 1) for t in out["iterates"]]
            curves.append([psnr_fn(t, y) for t in its])
            if i == 0:
                first = (x, its, y, p)
    if first is None:
        return None
    x, its, y, p = first
    picks = _spread(len(its), max_show)
    fig = plt.figure(figsize=(2.3 * (len(picks) + 2), 5.4))
    gs = fig.add_gridspec(2, len(picks) + 2, height_ratios=[1, 1.1])
    show = [("input", x), *[(f"stage {k + 1}: {curves[0][k]:.2f} dB", its[k]) for k in picks], ("ground truth", y)]
    for j, (title, t) in enumerate(show):
        ax = fig.add_subplot(gs[0, j])
        ax.imshow(t[0].permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(gs[1, :])
    arr = np.array(curves)
    stages = np.arange(1, arr.shape[1] + 1)
    for c in arr:
        ax.plot(stages, c, color="tab:gray", alpha=0.3, lw=0.8)
    ax.plot(stages, arr.mean(axis=0), color="tab:red", lw=2, label=f"mean over {len(arr)} MDIR test images")
    ax.set(xlabel="unfolding stage", ylabel="PSNR of the iterate (dB)", xticks=stages)
    ax.legend(fontsize=8)
    fig.suptitle(f"{label}: image estimate after each unfolding stage ({p.combination} input)", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- training


def fig_training(history: pd.DataFrame) -> Any:
    """``train/loss`` against step for every training run (from MLflow)."""
    if history.empty:
        return None
    import seaborn as sns

    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    sns.lineplot(data=history, x="step", y="value", hue="label", ax=ax, marker="o", markersize=3)
    ax.set(yscale="log", ylabel="train/loss (log scale)", title="Training curves (MLflow train/loss)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- claims over budget


def fig_trajectories(traj: pd.DataFrame, labels: dict[str, str]) -> Any:
    """One panel per MDIR quality claim: our delta against the training budget, with its interval."""
    if traj.empty or traj["budget"].nunique() < 2:
        return None
    plt = _plt()
    claims = list(dict.fromkeys(traj["claim"]))
    cols = min(4, len(claims))
    rows = math.ceil(len(claims) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows), squeeze=False, sharex=True)
    for ax, claim in zip(axes.flat, claims):
        t = traj[traj["claim"] == claim].sort_values("budget")
        ax.errorbar(t["budget"], t["delta"], yerr=[t["delta"] - t["low"], t["high"] - t["delta"]], marker="o",
                    capsize=3, lw=1.2)
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_title(labels.get(claim, claim), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(claims):]:
        ax.axis("off")
    fig.supxlabel("training budget (steps, log2 scale)", fontsize=9)
    fig.supylabel("delta (dB), ours", fontsize=9)
    fig.tight_layout()
    return fig

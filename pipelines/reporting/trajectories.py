"""Claims over training budget, what deciding an open claim would cost, and how far the unpublished details move
the claims.

**Trajectories.** Every run branches shorter budgets off its schedule (``train.budgets``; each equals a separate
run of that many steps), and the evaluate stage scores every budget's checkpoint on the MDIR test set
(``trajectory.csv``). A quality claim's delta is computed at each budget with the same paired, unit-resampling
interval as the ledger's. A claim is "stable at this scale" when the last doubling of the budget moved its delta
by less than the last interval's half-width; otherwise its trend points up or down.

**Power.** For a claim left undecided, the observed spread says how many independent units (source photos) and
seeds an interval needs to exclude 0 if the true effect were the paper's: with ``s_u`` the spread of the per-unit
differences and ``s_s`` that of the per-seed differences, the standard error at ``n`` units and ``k`` seeds is
about ``sqrt(s_u^2 / n + s_s^2 / k)``; deciding the paper's effect ``d`` with 80% power at 95% needs
``(1.96 + 0.84) * SE <= |d|``.

**Sensitivity.** Registered variants of ``interir`` (:data:`VARIANTS`: each one unpublished detail read the other
way) replace ``interir`` in every claim that involves it; the table reports how far each moves the claim.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.common.paths import TRAJECTORY, run_name
from pipelines.reporting.inputs import difference, select

# interir variants, each flipping one unpublished detail (docs/interir.md): what the sensitivity table compares.
VARIANTS = {
    "interir_ipb16": "16 IPBlocks + the final RESM (today: 15 + RESM)",
    "interir_signed": "signed (tanh) RESM weights (today: sigmoid)",
    "interir_xtau": "explainable conv's surrogate gradient to the threshold only (today: also to the features)",
}
QUALITY_KINDS = ("gain", "control", "gain_all")
Z_DECIDE = 1.96 + 0.84  # a 95% interval excludes 0 with 80% power when the effect is this many SEs


def load_trajectories(eval_dir: Path, models: list[str], seeds: list[int]) -> pd.DataFrame:
    """Every (model, seed)'s ``trajectory.csv`` with ``model`` and ``seed`` columns (MDIR rows per budget)."""
    frames = []
    for m in models:
        for s in seeds:
            f = Path(eval_dir) / run_name(m, s) / TRAJECTORY
            if f.is_file():
                df = pd.read_csv(f, keep_default_na=False, na_values=[""])
                df["combination"] = df["combination"].fillna("")
                df["set"], df["model"], df["seed"] = "MDIR", m, s
                frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _claim_delta(rows: pd.DataFrame, c: Any, n_boot: int, ci: float) -> Any:
    """The claim's delta on ``rows`` (its own test set): combinations averaged for an every-combination claim."""
    comb = "" if c.kind == "gain_all" else c.combination
    return difference(rows, c.model_a, c.model_b, c.set, c.metric, n_boot, ci, comb)


def claim_trajectories(traj: pd.DataFrame, claims: pd.DataFrame, n_boot: int, ci: float) -> pd.DataFrame:
    """claim, budget, delta, low, high, ci_unit for every MDIR quality claim whose two models have budgets."""
    cols = ["claim", "budget", "delta", "low", "high", "ci_unit", "n_units", "seeds"]
    if traj.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for c in claims.itertuples(index=False):
        if c.kind not in QUALITY_KINDS or c.set.lower() != "mdir":
            continue
        have = traj[traj["model"].isin([c.model_a, c.model_b])]
        for budget in sorted(have["budget"].unique()):
            est = _claim_delta(have[have["budget"] == budget], c, n_boot, ci)
            if est.ok:
                rows.append({"claim": c.id, "budget": int(budget), "delta": est.value, "low": est.low,
                             "high": est.high, "ci_unit": est.resampled, "n_units": est.units, "seeds": est.seeds})
    return pd.DataFrame(rows, columns=cols)


def trend(traj: pd.DataFrame, claim: str) -> str:
    """"stable at this scale" when the last doubling moved the delta less than the last half-width; else the
    direction of the last move ("" with fewer than two budgets)."""
    t = traj[traj["claim"] == claim].sort_values("budget")
    if len(t) < 2:
        return ""
    last, prev = t.iloc[-1], t.iloc[-2]
    half = (last["high"] - last["low"]) / 2
    move = last["delta"] - prev["delta"]
    if math.isfinite(half) and abs(move) < half:
        return "stable at this scale"
    return f"still moving: {'up' if move > 0 else 'down'} {move:+.2f} over the last doubling"


def _spreads(per_image: pd.DataFrame, c: Any) -> tuple[float, float, int, int] | None:
    """(spread of per-unit differences, spread of per-seed differences, units, seeds) of a claim's comparison."""
    comb = "" if c.kind == "gain_all" else c.combination
    a, b = (select(per_image, m, c.set, comb) for m in (c.model_a, c.model_b))
    if a.empty or b.empty:
        return None
    unit = "unit" if "unit" in a.columns else "image"
    ua = a.groupby(unit)[c.metric].mean()
    ub = b.groupby(unit)[c.metric].mean()
    d_unit = (ua - ub).dropna()
    sa, sb = a.groupby("seed")[c.metric].mean(), b.groupby("seed")[c.metric].mean()
    seed_var = (sa.var(ddof=1) if len(sa) > 1 else 0.0) + (sb.var(ddof=1) if len(sb) > 1 else 0.0)
    return float(d_unit.std(ddof=1)), float(math.sqrt(seed_var)), len(d_unit), max(len(sa), len(sb))


def power(per_image: pd.DataFrame, claims: pd.DataFrame, effect_col: str = "paper_value") -> pd.DataFrame:
    """For every quality claim: the units (at today's seeds) and seeds (at today's units) that would decide the
    paper's effect size with 80% power at 95%, from the observed spreads (see the module doc)."""
    cols = ["claim", "paper_effect", "se_now", "unit_sd", "seed_sd", "units_now", "seeds_now",
            "units_needed_at_these_seeds", "seeds_needed_at_these_units", "decidable_now"]
    rows = []
    for c in claims.itertuples(index=False):
        d = float(getattr(c, effect_col)) if c.kind == "gain" else float("nan")
        if c.kind != "gain" or not math.isfinite(d) or d == 0:
            continue
        spreads = _spreads(per_image, c)
        if spreads is None:
            continue
        s_u, s_s, n, k = spreads
        target = (abs(d) / Z_DECIDE) ** 2  # the largest SE^2 that decides d
        se_now = math.sqrt(s_u**2 / max(n, 1) + s_s**2 / max(k, 1))
        units_needed = math.ceil(s_u**2 / (target - s_s**2 / k)) if target > s_s**2 / k else None
        seeds_needed = math.ceil(s_s**2 / (target - s_u**2 / n)) if s_s > 0 and target > s_u**2 / n else (
            k if s_s == 0 and target > s_u**2 / n else None)
        rows.append({"claim": c.id, "paper_effect": d, "se_now": se_now, "unit_sd": s_u, "seed_sd": s_s,
                     "units_now": n, "seeds_now": k, "units_needed_at_these_seeds": units_needed,
                     "seeds_needed_at_these_units": seeds_needed, "decidable_now": Z_DECIDE * se_now <= abs(d)})
    return pd.DataFrame(rows, columns=cols)  # the columns even when no claim has data (one model run)


def power_text(row: pd.Series) -> str:
    """One sentence for the ledger: what deciding the paper's effect would take."""
    if row["decidable_now"]:
        return (f"the design resolves the paper's {row['paper_effect']:+.2f} dB (SE {row['se_now']:.2f}); "
                "what remains open is the models, not the statistics")
    units, seeds = (v if v is not None and pd.notna(v) else None
                    for v in (row["units_needed_at_these_seeds"], row["seeds_needed_at_these_units"]))
    parts = [f"{int(units)} source photos at {row['seeds_now']} seed(s)" if units else
             f"more seeds: the seed spread alone ({row['seed_sd']:.2f} dB) exceeds the effect's budget"]
    if seeds:
        parts.append(f"{int(seeds)} seeds at {row['units_now']} photos")
    return (f"to resolve the paper's {row['paper_effect']:+.2f} dB with 80% power at 95% (SE now "
            f"{row['se_now']:.2f} dB): " + " or ".join(parts))


def sensitivity(per_image: pd.DataFrame, claims: pd.DataFrame, n_boot: int, ci: float) -> pd.DataFrame:
    """How far each :data:`VARIANTS` model, standing in for ``interir``, moves every quality claim with it.

    ``shift`` = the claim's delta with the variant minus its delta with ``interir``; ``low``/``high`` are the
    interval of the shift itself: the paired difference variant - interir on the claim's images (negated when
    ``interir`` is the claim's second model), resampling units and both models' seeds."""
    cols = ["claim", "variant", "detail", "delta_interir", "delta_variant", "shift", "low", "high", "ci_unit"]
    present = [v for v in VARIANTS if not per_image.empty and (per_image["model"] == v).any()]
    rows = []
    for c in claims.itertuples(index=False):
        if c.kind not in QUALITY_KINDS or "interir" not in (c.model_a, c.model_b):
            continue
        base = _claim_delta(per_image, c, n_boot, ci)
        for v in present:
            swapped = c._replace(model_a=v if c.model_a == "interir" else c.model_a,
                                 model_b=v if c.model_b == "interir" else c.model_b)
            est = _claim_delta(per_image, swapped, n_boot, ci)
            sign = 1.0 if c.model_a == "interir" else -1.0
            move = _claim_delta(per_image, c._replace(model_a=v, model_b="interir"), n_boot, ci)
            low, high = sorted((sign * move.low, sign * move.high))
            rows.append({"claim": c.id, "variant": v, "detail": VARIANTS[v], "delta_interir": base.value,
                         "delta_variant": est.value, "shift": est.value - base.value, "low": low,
                         "high": high, "ci_unit": move.resampled})
    return pd.DataFrame(rows, columns=cols)


def summary(traj: pd.DataFrame) -> dict[str, str]:
    """claim -> its trend verdict."""
    return {c: trend(traj, c) for c in dict.fromkeys(traj["claim"])} if len(traj) else {}


def as_array(traj: pd.DataFrame, claim: str) -> np.ndarray:
    """(budget, delta, low, high) rows of one claim, by budget (for the figure)."""
    t = traj[traj["claim"] == claim].sort_values("budget")
    return t[["budget", "delta", "low", "high"]].to_numpy(dtype=float)

"""The claims ledger: the paper's quantitative claims (``reference/claims.csv``) checked two ways.

1. Reproduced: each claim's ``kind`` says how our results test it, and :func:`verdict_gain`
   / :func:`verdict_count` turn the numbers into a verdict (rules in :data:`RULES`).
2. Internal consistency: the value the text states against the value its own tables give
   (``paper_op`` over two selectors such as ``table8_resources[method=InterIR].time_s``),
   plus generated checks that averages match their columns and that tables quoting each
   other agree (:func:`consistency_checks`).

Claims are data; verdicts are computed here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from pipelines.common.paths import INPUT_RUN
from pipelines.data.manifest import COMBINATIONS
from pipelines.reporting import specs
from pipelines.reporting.inputs import difference, profile_value, reference_dir, reference_table, select
from pipelines.reporting.stats import Estimate

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive at this scale"
BELOW_INPUT = "undecidable: below the input"
MATCHED = "matched by construction"
CONTROL_UP, CONTROL_DOWN, CONTROL_NULL = "measured: positive", "measured: negative", "measured: no clear difference"
MIN_UNITS = 5  # fewer independent units (source photos, images) than this: no verdict
NOT_RUN, PAPER_ONLY = "not run", "paper only (not reproducible here)"
NOT_AVAILABLE = "not available (test set not under the data root, or not scored: evaluate.skip_sdir)"
CONSISTENT, INCONSISTENT = "consistent", "inconsistent"
# Averages against their columns: the stated average is rounded (<= 0.005) and so is each column (the
# mean's error <= 0.005), per paper metric.
AVERAGE_TOLERANCE = {"psnr": 0.0101, "ssim": 0.00101}

RULES = {
    "gain": "A gain (or loss) claim holds if the 95% bootstrap CI of our difference excludes 0 with the paper's "
            "sign; it does not hold if the CI excludes 0 with the opposite sign; otherwise it is inconclusive at "
            f"this scale (always so with fewer than {MIN_UNITS} independent units). The CI resamples the "
            "independent units (MDIR: source photos, each with its images under every combination; SDIR: images), "
            "paired between the two models, and each model's seeds when it has several (column ci_unit). The size "
            "of the gain is reported, not tested: our models are far smaller and shorter-trained than the paper's.",
    "input": "A quality claim between two models is 'undecidable: below the input' when either model does not "
             "beat the unrestored input on the images the claim covers (its CI of model - input does not lie "
             "above 0): ranking two models that damage the images says nothing about restoration.",
    "control": "A harness control (no claim of the paper's; e.g. what InterIR's architecture adds beyond the "
               "three modules) reports our difference: 'measured: positive' or 'negative' when its CI excludes 0, "
               "else 'measured: no clear difference'.",
    "gain_all": "An 'on every combination' claim holds if the gain holds on each of the seven combinations, does "
                "not hold if any combination shows a significant difference of the opposite sign, and is "
                "inconclusive otherwise.",
    "count": "A parameter or MAC claim is checked against our paper-preset counts (profile.json, preset 'paper', "
             "256x256 input, MACs; the paper writes FLOPs): it holds if |ours - paper| <= tolerance x |paper| "
             "(the tolerance is per claim, in claims.csv), otherwise it does not hold. Where our preset was "
             "chosen to give the paper's number (claims.csv column construction says how), a match is 'matched "
             "by construction', not 'holds': only independent matches (DeepSN-Net against its official code) "
             "reproduce a number.",
    "paper_only": "Claims about methods this harness does not train are not tested (paper only); they are still "
                  "checked for internal consistency.",
    "internal": "Internal consistency: the number the text states is recomputed from the paper's own tables; "
                "consistent if within the stated tolerance (0.011 dB for two-decimal differences, 0.1 "
                "percentage point for ratios, exact for counts; averages against their columns within "
                f"{AVERAGE_TOLERANCE['psnr']} dB / {AVERAGE_TOLERANCE['ssim']} SSIM, the rounding of the average "
                "plus that of the mean of rounded columns).",
}


def load_claims() -> pd.DataFrame:
    """The claims table (``pipelines/reporting/reference/claims.csv``)."""
    with reference_dir().joinpath("claims.csv").open() as fh:
        df = pd.read_csv(fh, keep_default_na=False, na_values=[""])
    for col in ("model_a", "model_b", "metric", "set", "combination", "paper_op", "paper_a", "paper_b",
                "construction"):
        df[col] = df[col].fillna("").astype(str)
    return df


# --------------------------------------------------------------------------- verdict rules


def verdict_gain(est: Estimate, paper_value: float) -> str:
    """Verdict on a gain claim from our difference estimate (rule ``gain``)."""
    if not est.ok:
        return NOT_RUN
    if est.units < MIN_UNITS or not (math.isfinite(est.low) and math.isfinite(est.high)):
        return INCONCLUSIVE
    sign = np.sign(paper_value)
    if est.low > 0 or est.high < 0:
        ours = 1.0 if est.low > 0 else -1.0
        if sign == 0:
            return FAILS
        return HOLDS if ours == sign else FAILS
    return INCONCLUSIVE


def verdict_control(est: Estimate) -> str:
    """What a harness control measured (rule ``control``)."""
    if not est.ok:
        return NOT_RUN
    if est.units < MIN_UNITS or not est.excludes_zero:
        return CONTROL_NULL
    return CONTROL_UP if est.low > 0 else CONTROL_DOWN


def beats_input(per_image: pd.DataFrame, model: str, set_name: str, metric: str, n_boot: int, ci: float,
                combination: str = "") -> bool | None:
    """Whether ``model`` is clearly better than the unrestored input on these images (CI of model - input above
    0); None when the inputs were not scored (rule ``input``)."""
    if select(per_image, INPUT_RUN, set_name, combination).empty:
        return None
    est = difference(per_image, model, INPUT_RUN, set_name, metric, n_boot, ci, combination)
    return bool(est.ok and math.isfinite(est.low) and est.low > 0)


def below_input(per_image: pd.DataFrame, models: tuple[str, ...], set_name: str, metric: str, n_boot: int,
                ci: float, combination: str = "") -> list[str]:
    """The models among ``models`` that do not beat the input on the images of a claim."""
    return [m for m in models if beats_input(per_image, m, set_name, metric, n_boot, ci, combination) is False]


def verdict_all(verdicts: list[str]) -> str:
    """Verdict on an 'every combination' claim from the per-combination gain verdicts (rule ``gain_all``)."""
    if not verdicts or any(v == NOT_RUN for v in verdicts):
        return NOT_RUN
    if any(v == BELOW_INPUT for v in verdicts):
        return BELOW_INPUT
    if any(v == FAILS for v in verdicts):
        return FAILS
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return INCONCLUSIVE


def verdict_count(ours: float, paper_value: float, tolerance: float, by_construction: bool = False) -> str:
    """Verdict on a parameter/MAC claim (rule ``count``): relative tolerance around the paper's value; a match
    that our presets were chosen to produce is ``matched by construction``."""
    if not math.isfinite(ours):
        return NOT_RUN
    if abs(ours - paper_value) > tolerance * abs(paper_value) + 1e-12:
        return FAILS
    return MATCHED if by_construction else HOLDS


# --------------------------------------------------------------------------- paper selectors

_SEL = re.compile(r"^(?P<table>\w+)\[(?P<filters>[^\]]*)\]\.(?P<col>\w+)(?:@(?P<key>\w+))?$")


def select_paper(selector: str) -> pd.Series:
    """Values a selector names in the reference tables.

    ``table[col=value;col!=value].column`` gives the matching rows' ``column``; with ``@key`` the
    Series is indexed by that column (for per-combination/test-set comparisons).
    """
    m = _SEL.match(selector.strip())
    if not m:
        raise ValueError(f"bad paper selector {selector!r}")
    df = reference_table(m["table"])
    for f in filter(None, (s.strip() for s in m["filters"].split(";"))):
        neg = "!=" in f
        col, val = f.split("!=" if neg else "=", 1)
        mask = df[col.strip()].astype(str) == val.strip()
        df = df[~mask] if neg else df[mask]
    if df.empty:
        raise ValueError(f"paper selector {selector!r} matches no row")
    s = df[m["col"]].astype(float)
    return pd.Series(s.to_numpy(), index=df[m["key"]].to_numpy()) if m["key"] else s.reset_index(drop=True)


PAPER_OPS: dict[str, Callable[[pd.Series, pd.Series], float]] = {
    "diff": lambda a, b: float(a.iloc[0] - b.iloc[0]),
    "ratio": lambda a, b: float(a.iloc[0] / b.iloc[0]),
    "ratio_pct": lambda a, b: float(100 * a.iloc[0] / b.iloc[0]),
    # how many keys of A beat B there (B's best when B has several rows per key)
    "count_gt": lambda a, b: float(sum(a[k] > b.groupby(level=0).max()[k] for k in a.index)),
    "count_ge": lambda a, b: float(sum(a[k] >= b.groupby(level=0).max()[k] for k in a.index)),
}


def internal_check(op: str, sel_a: str, sel_b: str, stated: float, tolerance: float) -> tuple[float, str]:
    """(value derived from the paper's tables, consistent/inconsistent) for one stated number."""
    derived = PAPER_OPS[op](select_paper(sel_a), select_paper(sel_b))
    return derived, CONSISTENT if abs(derived - stated) <= tolerance + 1e-9 else INCONSISTENT


# --------------------------------------------------------------------------- the ledger


def _params_m(profile: dict, model: str) -> float:
    return profile_value(profile, model, "paper", "params") / 1e6


def _fmt_est(est: Estimate) -> tuple[float, float, float]:
    return est.value, est.low, est.high


def evaluate_claims(per_image: pd.DataFrame, profile: dict, n_boot: int, ci: float,
                    claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim: paper value, ours (+ CI), reproduced verdict, internal-consistency result."""
    claims = load_claims() if claims is None else claims
    rows = []
    for c in claims.itertuples(index=False):
        ours = lo = hi = float("nan")
        detail = unit = ""
        kind = c.kind
        pair = (c.model_a, c.model_b)
        if kind in ("gain", "control"):
            est = difference(per_image, c.model_a, c.model_b, c.set, c.metric, n_boot, ci, c.combination)
            ours, lo, hi = _fmt_est(est)
            unit = est.resampled
            verdict = verdict_gain(est, float(c.paper_value)) if kind == "gain" else verdict_control(est)
            ran = all(len(select(per_image, m, "MDIR")) for m in pair)
            if verdict == NOT_RUN and ran and c.set.lower() != "mdir":
                verdict = NOT_AVAILABLE
            if est.ok:
                detail = f"{est.units} {est.ci_unit or 'unit'}s ({est.n} images), {est.seeds} seed(s)"
                if est.units < MIN_UNITS:
                    detail += f" (fewer than {MIN_UNITS} units: no verdict)"
                below = below_input(per_image, pair, c.set, c.metric, n_boot, ci, c.combination)
                if below:
                    verdict = BELOW_INPUT
                    detail += f"; not better than the unrestored input: {', '.join(below)}"
        elif kind == "gain_all":
            per = []
            diffs = []
            for comb in COMBINATIONS:
                est = difference(per_image, c.model_a, c.model_b, c.set, c.metric, n_boot, ci, comb)
                v = verdict_gain(est, 1.0)
                if v != NOT_RUN and below_input(per_image, pair, c.set, c.metric, n_boot, ci, comb):
                    v = BELOW_INPUT
                per.append(v)
                diffs.append(est.value)
                unit = unit or est.resampled
            verdict = verdict_all(per)
            if verdict != NOT_RUN:
                ours = float(sum(v == HOLDS for v in per))
                detail = f"significant wins on {ours:.0f}/7; differences (dB) " + ", ".join(
                    f"{k}: {d:+.2f}{' (below the input)' if v == BELOW_INPUT else ''}"
                    for k, d, v in zip(COMBINATIONS, diffs, per))
        elif kind in ("params", "macs", "params_delta", "macs_ratio"):
            if kind == "params":
                ours = _params_m(profile, c.model_a)
            elif kind == "macs":
                ours = profile_value(profile, c.model_a, "paper", "gmacs")
            elif kind == "params_delta":
                ours = _params_m(profile, c.model_a) - _params_m(profile, c.model_b)
            else:
                ours = profile_value(profile, c.model_a, "paper", "gmacs") / profile_value(
                    profile, c.model_b, "paper", "gmacs")
            verdict = verdict_count(ours, float(c.paper_value), float(c.tolerance), bool(c.construction))
            if math.isfinite(ours):
                detail = f"paper preset, tolerance ±{100 * float(c.tolerance):.0f}%"
                if c.construction:
                    detail += f"; by construction: {c.construction}"
        elif kind == "paper_only":
            verdict = PAPER_ONLY
        else:
            raise ValueError(f"claim {c.id}: unknown kind {kind!r}")
        derived, consistency = float("nan"), ""
        if c.paper_op:
            derived, consistency = internal_check(c.paper_op, c.paper_a, c.paper_b, float(c.paper_value),
                                                  float(c.paper_tolerance))
        rows.append({"id": c.id, "claim": c.claim, "source": c.source, "kind": kind,
                     "paper_value": float(c.paper_value), "ours": ours, "ci_low": lo, "ci_high": hi,
                     "ci_unit": unit, "verdict": verdict, "detail": detail, "paper_tables_value": derived,
                     "internal_consistency": consistency})
    return pd.DataFrame(rows)


_AVERAGED = {specs.MDIR: "columns", specs.SDIR: "test sets"}  # what an average row of a kind averages


def _average_checks(spec: specs.TableSpec) -> list[tuple[str, float, float, float]]:
    """(check, stated, derived, tolerance) of every method's "average" row of an MDIR/SDIR table that has one."""
    paper = reference_table(spec.csv)
    out = []
    for method, g in paper.groupby(spec.label_col, sort=False):
        cols, avg = g[g[spec.key_col] != "average"], g[g[spec.key_col] == "average"]
        if avg.empty:
            continue
        for metric, _ in spec.metrics:
            out.append((f"{spec.name} {method}: average {metric.upper()} = mean of the {len(cols)} "
                        f"{_AVERAGED[spec.kind]}", float(avg[metric].iloc[0]), float(cols[metric].mean()),
                        AVERAGE_TOLERANCE[metric]))
    return out


def consistency_checks() -> pd.DataFrame:
    """Checks of the paper against itself: averages against their columns, tables quoting each other."""
    rows = []

    def add(check: str, stated: float, derived: float, tol: float) -> None:
        rows.append({"check": check, "stated": stated, "derived": derived, "difference": stated - derived,
                     "result": CONSISTENT if abs(stated - derived) <= tol + 1e-9 else INCONSISTENT})

    for spec in specs.TABLES:
        if spec.kind in _AVERAGED:
            for check in _average_checks(spec):
                add(*check)
    t1 = reference_table(specs.spec("table1").csv)

    def t1v(method: str, comb: str) -> float:
        return float(t1[(t1["method"] == method) & (t1["combination"] == comb)]["psnr"].iloc[0])

    # Tables quoting each other: facts about these tables, not generic rules.
    t4, t5, t7, t8 = (reference_table(specs.spec(t).csv) for t in ("table4", "table5", "table7", "table8"))
    add("Table 4 baseline = Table 1 DeepSN-Net haze+rain+noise", float(t4["psnr"].iloc[0]),
        t1v("DeepSN-Net", "haze+rain+noise"), 0)
    add("Table 4 InterIR = Table 1 InterIR haze+rain+noise", float(t4["psnr"].iloc[-1]),
        t1v("InterIR", "haze+rain+noise"), 0)
    add("Table 5 FDTANet = Table 1 FDTANet haze+rain+noise", float(t5["psnr"].iloc[0]),
        t1v("FDTANet", "haze+rain+noise"), 0)
    add("Table 7 explainable conv = Table 1 InterIR average", float(t7["psnr"].iloc[0]), t1v("InterIR", "average"), 0)
    for method in ("InterIR", "DeepSN-Net", "Perceive-IR", "VLU-Net", "PromptIR"):
        add(f"Table 8 {method} PSNR = Table 1 average", float(t8[t8["method"] == method]["psnr"].iloc[0]),
            t1v(method, "average"), 0)
    for _, r in t4.dropna(subset=["gain_db"]).iterrows():
        add(f"Table 4 gain of '{r['variant']}' = its PSNR - baseline", float(r["gain_db"]),
            float(r["psnr"] - t4["psnr"].iloc[0]), 0.006)
    for _, r in t7.dropna(subset=["delta_db"]).iterrows():
        add(f"Table 7 delta of {r['conv']} = its PSNR - explainable conv", float(r["delta_db"]),
            float(r["psnr"] - t7["psnr"].iloc[0]), 0.006)
    return pd.DataFrame(rows)

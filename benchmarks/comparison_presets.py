"""Size ratios of the Table 1 comparison systems to InterIR at each preset (params and MACs, meta device).

The smoke and small presets of ``restormer``, ``promptir`` and ``airnet`` are scaled-down versions of the
paper ones; they keep the systems' relative cost: at every preset, a model's params and MACs divided by
InterIR's at the same preset should stay within +-25 % of the same ratios at the paper preset
(``tests/test_comparison_presets.py`` asserts it). Counts come from
``pipelines.engine.profiling.profile_model(name, preset, fvcore=False, latency=False)``: FlopCounterMode
MACs at 1x3x256x256 on the meta device, with the analytic FFT, interpolation and deformable-conv terms.

    PYTHONPATH=. .venv/bin/python benchmarks/comparison_presets.py [--models restormer,promptir,airnet]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODELS = ("restormer", "promptir", "airnet")
REFERENCE = "interir"
PRESETS = ("smoke", "small", "paper")
TOLERANCE = 0.25


def sizes(name: str, preset: str) -> tuple[int, float]:
    """(params, GMACs) of ``name`` at ``preset``: meta device, FlopCounterMode + analytic terms."""
    from pipelines.engine.profiling import profile_model

    res = profile_model(name, preset, fvcore=False, latency=False)
    return res["params"], res["gmacs_flopcounter"]


def ratio_table(models=MODELS, reference: str = REFERENCE) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {preset: {params, gmacs, params_ratio, gmacs_ratio, params_rel, gmacs_rel}}}``.

    ``*_ratio`` = model / reference at the same preset; ``*_rel`` = that ratio / the paper preset's ratio.
    """
    ref = {p: sizes(reference, p) for p in PRESETS}
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in models:
        rows = {}
        for p in PRESETS:
            params, gmacs = sizes(name, p)
            rows[p] = {"params": params, "gmacs": gmacs, "params_ratio": params / ref[p][0],
                       "gmacs_ratio": gmacs / ref[p][1]}
        for p in PRESETS:
            rows[p]["params_rel"] = rows[p]["params_ratio"] / rows["paper"]["params_ratio"]
            rows[p]["gmacs_rel"] = rows[p]["gmacs_ratio"] / rows["paper"]["gmacs_ratio"]
        table[name] = rows
    table[reference] = {p: {"params": ref[p][0], "gmacs": ref[p][1]} for p in PRESETS}
    return table


def to_markdown(table: dict, reference: str = REFERENCE) -> str:
    lines = [f"| Model | Preset | Params | GMACs (256x256) | Params / {reference} | GMACs / {reference} "
             "| vs paper ratio (params, MACs) |", "|---|---|---|---|---|---|---|"]
    for name, rows in table.items():
        for p, r in rows.items():
            if name == reference:
                lines.append(f"| {name} | {p} | {r['params']:,} | {r['gmacs']:.3f} | 1 | 1 | - |")
                continue
            lines.append(f"| {name} | {p} | {r['params']:,} | {r['gmacs']:.3f} | {r['params_ratio']:.3f} | "
                         f"{r['gmacs_ratio']:.3f} | {r['params_rel']:.3f}, {r['gmacs_rel']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated registry names")
    args = ap.parse_args(argv)
    table = ratio_table(args.models.split(","))
    print(to_markdown(table))
    bad = [(n, p) for n, rows in table.items() if n != REFERENCE for p, r in rows.items()
           if max(abs(r["params_rel"] - 1), abs(r["gmacs_rel"] - 1)) > TOLERANCE]
    if bad:
        print(f"outside +-{TOLERANCE:.0%}: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

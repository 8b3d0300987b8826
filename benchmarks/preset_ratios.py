"""Size ratios of the paper's model comparisons at every preset, and a search for fair presets.

A comparison A / B (say InterIR against DeepSN-Net, Tables 1, 4, 8) measured at a reduced preset says something
about the architectures only if A and B keep the relative sizes they have at the paper presets. This script prints,
for every comparison in :data:`COMPARISONS`, the parameter ratio and the MAC ratio (MACs at 1x3x256x256, the
convention of ``pipelines.engine.profiling``, counted on the meta device) at the paper preset and at the reduced
presets, with the relative deviation from the paper ratio; a comparison is fair when both deviations are within
:data:`TOLERANCE` (25 %). ``tests/test_preset_ratios.py`` asserts it for ``smoke`` and ``small``.

Scaling rule behind the presets: a comparison's ratios stay put when every model family is scaled by the same factor
``s`` in parameters and in MACs. ``--search FAMILY --scale s`` therefore looks for the family's hyper-parameters
(width by bisection, the other knobs of ``Family.grid`` exhaustively) whose parameters and MACs are closest to ``s``
times those of its paper preset (error = the larger of the two |log(size / target)|, plus 0.03 per knob other than
width and depth that differs from the paper preset, so the paper's internal proportions win ties), then checks the
family's variants (the comparisons inside the family) at the best candidates. The current presets are at
s ~ 0.022 (smoke) and s ~ 0.074 (small): search every family at the same s. A family compared only with another
model (Restormer, PromptIR, AirNet against InterIR) is best searched with ``--match interir:smoke``: its targets are
then InterIR's own parameter and MAC scales at that preset (they differ a little), so the candidates' deviations
are the ratio deviations the test checks.

    PYTHONPATH=. .venv/bin/python benchmarks/preset_ratios.py                  # ratio table, smoke and small
    PYTHONPATH=. .venv/bin/python benchmarks/preset_ratios.py --markdown       # the table in docs/baselines.md
    PYTHONPATH=. .venv/bin/python benchmarks/preset_ratios.py --search deepsn --scale 0.074 --grid depth=4,5,6
    PYTHONPATH=. .venv/bin/python benchmarks/preset_ratios.py --search promptir --match interir:small
    PYTHONPATH=. .venv/bin/python benchmarks/preset_ratios.py --time smoke --batch 4   # training step, 1 thread

Adding a comparison (e.g. a new baseline against InterIR) is one line in :data:`COMPARISONS`; adding a searchable
family is one entry in :data:`FAMILIES`.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TOLERANCE = 0.25  # |ratio at the preset / ratio at the paper preset - 1|, for parameters and for MACs


@dataclass(frozen=True)
class Comparison:
    """Model ``a`` against model ``b``, as the paper (or the harness) compares them."""

    a: str
    b: str
    where: str


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("interir", "deepsn_net", "Tables 1, 4, 8"),
    Comparison("interir", "fdtanet", "Table 1"),
    Comparison("deepsn_xconv", "deepsn_net", "Tables 4, 5"),
    Comparison("deepsn_resm", "deepsn_net", "Table 4"),
    Comparison("deepsn_dmum", "deepsn_net", "Table 4"),
    Comparison("deepsn_all", "deepsn_net", "Table 4 control (the modules)"),
    Comparison("interir", "deepsn_all", "Table 4 control (the architecture)"),
    Comparison("fdtanet_xconv", "fdtanet", "Table 5"),
    Comparison("interir_como", "interir", "Table 7"),
    Comparison("interir_arconv", "interir", "Table 7"),
    Comparison("restormer", "interir", "Table 1"),
    Comparison("promptir", "interir", "Tables 1, 8"),
    Comparison("airnet", "interir", "Table 1"),
)

# Sizes of the paper presets (params, GMACs), as counted by sizes(name, "paper"); they never change with the reduced
# presets, so the fast test reads them from here (tests/test_preset_ratios.py re-counts them in a slow test).
# A model missing here is counted.
PAPER_SIZES: dict[str, tuple[int, float]] = {
    "interir": (26_909_949, 23.975682),
    "deepsn_net": (22_719_696, 80.288549),
    "deepsn_xconv": (22_719_958, 80.288549),
    "deepsn_resm": (23_032_896, 80.28886),
    "deepsn_dmum": (21_936_816, 76.060949),
    "deepsn_all": (22_250_278, 76.06126),
    "fdtanet": (34_100_067, 28.214108),
    "fdtanet_xconv": (34_100_119, 28.214108),
    "interir_como": (27_418_589, 23.97999),
    "interir_arconv": (36_665_689, 27.836367),
    "restormer": (26_126_644, 154.882032),
    "promptir": (35_376_967, 172.715536),
    "airnet": (8_930_313, 429.530415),
}


# ------------------------------------------------------------------------------------------------ counting
def _freeze(kw: dict[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items()))


@cache
def _sizes(name: str, preset: str, frozen: tuple) -> tuple[int, float]:
    from interir.registry import create_model
    from pipelines.engine.profiling import count_params, macs_flopcounter

    with torch.device("meta"):
        model = create_model(name, preset, **dict(frozen)).eval()
        x = torch.empty(1, 3, 256, 256)
    fc = macs_flopcounter(model, x)
    return count_params(model), (fc["macs"] + fc["fft"]) / 1e9


def sizes(name: str, preset: str, **overrides: Any) -> tuple[int, float]:
    """(parameters, GMACs at 1x3x256x256) of ``create_model(name, preset, **overrides)``, on the meta device."""
    return _sizes(name, preset, _freeze(overrides))


@cache
def _params(name: str, preset: str, frozen: tuple) -> int:
    from interir.registry import create_model

    with torch.device("meta"):
        model = create_model(name, preset, **dict(frozen))
    return sum(p.numel() for p in model.parameters())


def paper_sizes(name: str, cached: bool = True) -> tuple[int, float]:
    if cached and name in PAPER_SIZES:
        return PAPER_SIZES[name]
    return sizes(name, "paper")


# ------------------------------------------------------------------------------------------------ ratio table
@dataclass(frozen=True)
class RatioRow:
    comparison: Comparison
    preset: str
    params: float  # params(a) / params(b)
    macs: float
    paper_params: float
    paper_macs: float

    @property
    def dev_params(self) -> float:
        return self.params / self.paper_params - 1

    @property
    def dev_macs(self) -> float:
        return self.macs / self.paper_macs - 1

    @property
    def fair(self) -> bool:
        return abs(self.dev_params) <= TOLERANCE and abs(self.dev_macs) <= TOLERANCE


def ratio(c: Comparison, preset: str, cached_paper: bool = True) -> RatioRow:
    """The comparison's ratios at ``preset`` and at the paper preset."""
    pa, ma = sizes(c.a, preset)
    pb, mb = sizes(c.b, preset)
    qa, na = paper_sizes(c.a, cached_paper)
    qb, nb = paper_sizes(c.b, cached_paper)
    return RatioRow(c, preset, pa / pb, ma / mb, qa / qb, na / nb)


def _pct(x: float) -> str:
    return f"{round(x * 100) or 0:+d}%"  # no "-0%"


def ratio_table(presets: Sequence[str], comparisons: Iterable[Comparison] = COMPARISONS,
                cached_paper: bool = True) -> tuple[list[str], bool]:
    """Markdown lines (one row per comparison: paper ratio, then each preset's ratio and deviation) and all-fair."""
    head = ["comparison (A / B)", "where", "params: paper"] + [f"{p}" for p in presets]
    head += ["MACs: paper"] + [f"{p}" for p in presets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ok = True
    for c in comparisons:
        rows = [ratio(c, p, cached_paper) for p in presets]
        ok &= all(r.fair for r in rows)
        par = [f"{r.params:.3f} ({_pct(r.dev_params)})" + ("" if abs(r.dev_params) <= TOLERANCE else " **!**")
               for r in rows]
        mac = [f"{r.macs:.3f} ({_pct(r.dev_macs)})" + ("" if abs(r.dev_macs) <= TOLERANCE else " **!**")
               for r in rows]
        first = rows[0] if rows else ratio(c, "paper", cached_paper)
        cells = [f"`{c.a}` / `{c.b}`", c.where, f"{first.paper_params:.3f}", *par, f"{first.paper_macs:.3f}", *mac]
        lines.append("| " + " | ".join(cells) + " |")
    return lines, ok


def size_table(presets: Sequence[str], names: Iterable[str]) -> list[str]:
    """Markdown: parameters and GMACs of each model at each preset."""
    head = ["model"] + [f"{p}: params / GMACs" for p in presets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        cells = [f"`{n}`"]
        for p in presets:
            q, m = paper_sizes(n) if p == "paper" else sizes(n, p)
            cells.append(f"{q / 1e6:.3f} M / {m:.3f} G")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ------------------------------------------------------------------------------------------------ search
@dataclass(frozen=True)
class Family:
    """A model family whose members share one preset: ``base`` is searched, ``variants`` checked."""

    base: str
    variants: tuple[str, ...]
    widths: tuple[int, ...]  # candidate widths, ascending (parameters grow with width)
    grid: dict[str, tuple] = field(default_factory=dict)  # other knobs, searched exhaustively
    to_kwargs: Callable[[dict[str, Any]], dict[str, Any]] = dict  # grid point -> constructor keyword arguments
    to_point: Callable[[dict[str, Any]], dict[str, Any]] = dict  # paper preset's arguments -> grid point
    free: tuple[str, ...] = ("width", "depth")  # knobs that may differ from the paper preset without a penalty

    @property
    def models(self) -> tuple[str, ...]:
        return (self.base, *self.variants)


# FDTANet block layouts: encoder blocks per level and decoder ATBlocks per level, by name; the number of middle
# blocks is a knob of its own. The four levels stay (the 1/16 bottleneck holds most parameters at few positions:
# fewer levels change the MACs per parameter).
FDTANET_ENCODERS = {"min": (1, 1, 1, 1), "quarter": (1, 1, 1, 2), "half": (1, 1, 2, 4), "paper": (2, 2, 4, 8)}
FDTANET_DECODERS = {"min": (1, 1, 1, 1), "paper": (2, 2, 2, 2)}


def _fdtanet_kwargs(point: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in point.items() if k not in ("enc", "dec")}
    if "enc" in point:
        out["enc_blocks"] = FDTANET_ENCODERS[point["enc"]]
    if "dec" in point:
        out["dec_blocks"] = FDTANET_DECODERS[point["dec"]]
    return out


def _fdtanet_point(args: dict[str, Any]) -> dict[str, Any]:
    args = dict(args)
    args["enc"] = next((k for k, v in FDTANET_ENCODERS.items() if v == tuple(args["enc_blocks"])), None)
    args["dec"] = next((k for k, v in FDTANET_DECODERS.items() if v == tuple(args["dec_blocks"])), None)
    return args


# Restormer and PromptIR (the same 4-level U-Net): ``depth`` is in eighths of the paper's depths, every stage scaled
# together, rounded half up, at least one block: 8 = (4, 6, 6, 8) + 4 refinement blocks, 4 = (2, 3, 3, 4) + 2,
# 2 = (1, 2, 2, 2) + 1, 1 = (1, 1, 1, 1) + 1. Heads (1, 2, 4, 8) and the FFN expansion stay the paper's.
UNET_BLOCKS, UNET_REFINEMENT = (4, 6, 6, 8), 4


def _eighths(n: int, depth: int) -> int:
    return max(1, math.floor(n * depth / 8 + 0.5))


def _unet_kwargs(point: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in point.items() if k not in ("width", "depth", "prompt_size")}
    out["dim"] = point["width"]
    if "depth" in point:
        out["num_blocks"] = tuple(_eighths(n, point["depth"]) for n in UNET_BLOCKS)
        out["num_refinement_blocks"] = _eighths(UNET_REFINEMENT, point["depth"])
    return out


def _unet_point(args: dict[str, Any]) -> dict[str, Any]:
    depth = next((d for d in range(8, 0, -1) if _unet_kwargs({"width": 1, "depth": d})["num_blocks"]
                  == tuple(args["num_blocks"])), None)
    point = {"width": args["dim"], "depth": depth}
    if "prompt_sizes" in args:
        point["prompt_size"] = args["prompt_sizes"][0]
    return point


# PromptIR's prompts: widths (64, 128, 320) at dim 48 scale with the width (multiples of 4, the prompt blocks' 4
# heads); sizes (S, S/2, S/4), S = 64 at the paper preset, a knob (the components hold prompt_dim x S^2 parameters).
PROMPT_WIDTHS = (4 / 3, 8 / 3, 20 / 3)


def _promptir_kwargs(point: dict[str, Any]) -> dict[str, Any]:
    out = _unet_kwargs(point)
    w = point["width"]
    out["prompt_dims"] = tuple(max(4, 4 * math.floor(w * f / 4 + 0.5)) for f in PROMPT_WIDTHS)
    if "prompt_size" in point:
        s = point["prompt_size"]
        out["prompt_sizes"] = (s, s // 2, s // 4)
    return out


# AirNet: the restorer's width n_feats and the encoder's width (the degradation map's channels) are equal, as in the
# paper preset (64); groups and blocks per group are the depth (paper 5 x 5).
def _airnet_kwargs(point: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in point.items() if k != "width"}
    out["n_feats"] = out["encoder_width"] = point["width"]
    return out


def _airnet_point(args: dict[str, Any]) -> dict[str, Any]:
    return {"width": args["n_feats"], "n_groups": args["n_groups"], "n_blocks": args["n_blocks"]}


FAMILIES: dict[str, Family] = {
    # widths: multiples of 8 (CoMo groups 16 channels of the EPBlocks' 2x-wide depthwise conv)
    "interir": Family("interir", ("interir_como", "interir_arconv", "interir_ipb16", "interir_signed"),
                      tuple(range(8, 257, 8)),
                      {"depth": tuple(range(2, 17)), "convs_expand": (16, 8, 24, 32)}),
    "deepsn": Family("deepsn_net", ("deepsn_xconv", "deepsn_resm", "deepsn_dmum", "deepsn_all"),
                     tuple(range(4, 129, 2)),
                     {"depth": tuple(range(2, 16)), "ratio_freq": (4, 2), "coefficient": (16, 8)}),
    # widths: even (SimpleGate halves every level's channels)
    "fdtanet": Family("fdtanet", ("fdtanet_xconv",), tuple(range(4, 65, 2)),
                      {"enc": tuple(FDTANET_ENCODERS), "middle_blocks": tuple(range(1, 13)),
                       "dec": ("min",)}, _fdtanet_kwargs, _fdtanet_point),
    # widths: even (Downsample halves the channels before the pixel-unshuffle); level i: 2**i heads for dim * 2**i
    "restormer": Family("restormer", (), tuple(range(2, 97, 2)), {"depth": tuple(range(1, 9))},
                        _unet_kwargs, _unet_point),
    # widths: even (the prompt blocks' 4 heads divide 2 * dim + prompt width)
    "promptir": Family("promptir", (), tuple(range(2, 97, 2)),
                       {"depth": tuple(range(1, 9)), "prompt_size": (64, 32, 16, 8)}, _promptir_kwargs, _unet_point),
    "airnet": Family("airnet", (), tuple(range(2, 129)), {"n_groups": (1, 2, 3, 4, 5), "n_blocks": (1, 2, 3, 4, 5)},
                     _airnet_kwargs, _airnet_point, free=("width", "n_groups", "n_blocks")),
}


@dataclass
class Candidate:
    point: dict[str, Any]
    kwargs: dict[str, Any]
    params: int
    gmacs: float
    error: float  # the larger |log(size / target)| of params and MACs
    score: float  # error + 0.03 per knob (other than width, depth) that differs from the paper preset
    worst_variant: float | None = None  # the largest |deviation| of the family's internal comparisons


def _paper_point(fam: Family) -> dict[str, Any]:
    from interir.registry import model_args

    return fam.to_point(model_args(fam.base, "paper"))


def match_scale(model: str, preset: str) -> tuple[float, float]:
    """(parameter scale, MAC scale) of ``model`` at ``preset`` relative to its paper preset: the targets that keep a
    family's ratios to ``model`` at ``preset`` equal to those at the paper presets."""
    (p, m), (q, n) = sizes(model, preset), paper_sizes(model)
    return p / q, m / n


def search(family: str, scale: float | tuple[float, float], grid: dict[str, tuple] | None = None, top: int = 5,
           check_variants: bool = True) -> list[Candidate]:
    """Candidates of ``family`` nearest to ``scale`` x its paper preset's parameters and MACs, best first.

    ``scale`` is one factor for both, or (parameter factor, MAC factor), e.g. :func:`match_scale` of the model the
    family is compared with.

    With ``check_variants``, the family's internal comparisons are checked in that order until ``top`` candidates
    are fair (at most ``4 * top`` checked); the unfair ones met on the way are returned too, marked by their
    ``worst_variant`` deviation.
    """
    fam = FAMILIES[family]
    space = {**fam.grid, **(grid or {})}
    widths = tuple(space.pop("width", fam.widths))
    sp, sm = scale if isinstance(scale, tuple) else (scale, scale)
    p0, m0 = paper_sizes(fam.base)
    p_target, m_target = sp * p0, sm * m0
    paper = _paper_point(fam)
    found: list[Candidate] = []
    cutoff = math.inf
    keys = list(space)
    for values in itertools.product(*(space[k] for k in keys)):
        point = dict(zip(keys, values))

        def kwargs_at(w: int, point: dict[str, Any] = point) -> dict[str, Any]:
            return fam.to_kwargs({**point, "width": w})

        lo, hi = 0, len(widths) - 1  # first width whose parameters reach the target
        while lo < hi:
            mid = (lo + hi) // 2
            if _params(fam.base, "paper", _freeze(kwargs_at(widths[mid]))) < p_target:
                lo = mid + 1
            else:
                hi = mid
        for i in {max(lo - 1, 0), lo}:
            kw = kwargs_at(widths[i])
            p = _params(fam.base, "paper", _freeze(kw))
            if len(found) >= 4 * top and abs(math.log(p / p_target)) >= cutoff:
                continue  # its parameters alone are further off than the 4*top-th best so far: skip the MACs
            m = sizes(fam.base, "paper", **kw)[1]
            err = max(abs(math.log(p / p_target)), abs(math.log(m / m_target)))
            changed = sum(1 for k, v in point.items() if k not in fam.free and paper.get(k) != v)
            found.append(Candidate({**point, "width": widths[i]}, kw, p, m, err, err + 0.03 * changed))
            if len(found) >= 4 * top:
                cutoff = sorted(c.score for c in found)[4 * top - 1]
    found.sort(key=lambda c: c.score)
    if not check_variants:
        return found[:top]
    # check the family's own comparisons in score order; keep the first `top` fair candidates (and report the
    # unfair ones met on the way, so a grid that cannot be fair says so)
    inside = [c for c in COMPARISONS if c.a in fam.models and c.b in fam.models]
    best: list[Candidate] = []
    for cand in found[: 4 * top]:
        devs = []
        for c in inside:
            pa, ma = sizes(c.a, "paper", **cand.kwargs)
            pb, mb = sizes(c.b, "paper", **cand.kwargs)
            qa, na = paper_sizes(c.a)
            qb, nb = paper_sizes(c.b)
            devs += [abs((pa / pb) / (qa / qb) - 1), abs((ma / mb) / (na / nb) - 1)]
        cand.worst_variant = max(devs, default=0.0)
        best.append(cand)
        if sum(c.worst_variant <= TOLERANCE for c in best) >= top:
            break
    return best


def _parse_grid(items: Sequence[str]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for item in items:
        key, _, vals = item.partition("=")
        out[key] = tuple(int(v) if v.lstrip("-").isdigit() else v for v in vals.split(","))
    return out


# ------------------------------------------------------------------------------------------------ timing
def step_time(name: str, preset: str, batch: int, patch: int, steps: int, **overrides: Any) -> tuple[float, float]:
    """(median, min) seconds of one training step (forward, L1 + 0.1 FFT-L1, backward, clip, Adam), after 2 warm-up
    steps, on the current torch thread count."""
    from interir.losses import L1FFTLoss
    from interir.registry import create_model

    torch.manual_seed(0)
    model = create_model(name, preset, **overrides).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = L1FFTLoss(0.1)
    x, y = torch.rand(batch, 3, patch, patch), torch.rand(batch, 3, patch, patch)
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:]), min(times[2:])


def _table_models() -> list[str]:
    names: list[str] = []
    for c in COMPARISONS:
        names += [n for n in (c.a, c.b) if n not in names]
    return names


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--presets", nargs="+", default=["smoke", "small"], help="presets to compare with paper")
    ap.add_argument("--markdown", action="store_true", help="also print each model's size at every preset")
    ap.add_argument("--recount", action="store_true", help="count the paper presets instead of PAPER_SIZES")
    ap.add_argument("--search", choices=sorted(FAMILIES), help="search this family's hyper-parameters")
    ap.add_argument("--scale", type=float, help="target size as a fraction of the family's paper preset (with "
                    "--match: a factor on the matched scales)")
    ap.add_argument("--match", metavar="MODEL:PRESET", help="target scales (params, MACs) of MODEL at PRESET relative "
                    "to its paper preset, e.g. interir:smoke (keeps the family's ratios to MODEL)")
    ap.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2",
                    help="restrict or extend the search grid, e.g. depth=2,3 convs_expand=16 width=32,40")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--time", metavar="PRESET", help="time a training step of every table model at PRESET")
    ap.add_argument("--models", help="comma-separated models for --time (default: the table's)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)

    if a.time:
        torch.set_num_threads(a.threads)
        for name in a.models.split(",") if a.models else _table_models():
            med, low = step_time(name, a.time, a.batch, a.patch, a.steps)
            print(f"{name:16s} {a.time} batch {a.batch} {a.patch}x{a.patch}, {a.threads} thread(s): "
                  f"median {med * 1e3:6.0f} ms  min {low * 1e3:6.0f} ms", flush=True)
        return 0
    if a.search:
        if a.scale is None and a.match is None:
            ap.error("--search needs --scale or --match")
        sp = sm = 1.0 if a.scale is None else a.scale
        if a.match:
            model, _, preset = a.match.partition(":")
            mp, mm = match_scale(model, preset or "smoke")
            sp, sm = sp * mp, sm * mm
        p0, m0 = paper_sizes(FAMILIES[a.search].base)
        print(f"{a.search}: target {sp * p0 / 1e6:.3f} M params ({sp:.4g} x paper), {sm * m0:.3f} GMACs "
              f"({sm:.4g} x paper)")
        for i, c in enumerate(search(a.search, (sp, sm), _parse_grid(a.grid), a.top), 1):
            var = "" if c.worst_variant is None else f"  worst variant deviation {c.worst_variant:.0%}" + (
                "" if c.worst_variant <= TOLERANCE else " (unfair)")
            print(f"{i}. {c.point}  {c.params / 1e6:.3f} M ({_pct(c.params / (sp * p0) - 1)})  "
                  f"{c.gmacs:.3f} G ({_pct(c.gmacs / (sm * m0) - 1)}){var}")
            if FAMILIES[a.search].to_kwargs is not dict:
                print(f"   {c.kwargs}")
        return 0

    lines, ok = ratio_table(a.presets, cached_paper=not a.recount)
    print("\n".join(lines))
    if a.markdown:
        print()
        print("\n".join(size_table(["paper", *a.presets], _table_models())))
    print(f"\nall comparisons within +-{TOLERANCE:.0%} of the paper ratios: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

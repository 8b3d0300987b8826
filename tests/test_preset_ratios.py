"""Fair presets: every comparison's parameter and MAC ratios at smoke and small stay within 25 % of its ratios at the
paper presets (benchmarks/preset_ratios.py; counted on the meta device, nothing allocated)."""

from __future__ import annotations

import pytest

from benchmarks.preset_ratios import (
    COMPARISONS,
    FAMILIES,
    PAPER_SIZES,
    TOLERANCE,
    _paper_point,
    match_scale,
    paper_sizes,
    ratio,
    sizes,
)
from interir.registry import list_models, model_args


@pytest.mark.parametrize("preset", ["smoke", "small"])
@pytest.mark.parametrize("comparison", COMPARISONS, ids=lambda c: f"{c.a}/{c.b}")
def test_ratios_within_tolerance_of_paper(comparison, preset):
    r = ratio(comparison, preset)
    msg = (f"{comparison.a}/{comparison.b} at {preset}: params ratio {r.params:.3f} (paper {r.paper_params:.3f}), "
           f"MACs ratio {r.macs:.3f} (paper {r.paper_macs:.3f})")
    assert abs(r.dev_params) <= TOLERANCE, msg
    assert abs(r.dev_macs) <= TOLERANCE, msg


def test_comparisons_name_registered_models():
    known = set(list_models())
    assert {n for c in COMPARISONS for n in (c.a, c.b)} <= known
    assert {n for f in FAMILIES.values() for n in f.models} <= known


@pytest.mark.parametrize("preset", ["smoke", "small", "paper"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_variants_share_the_base_hyper_parameters(family, preset):
    """A variant changes one thing: every argument it shares with its family's base has the base's value."""
    fam = FAMILIES[family]
    base = model_args(fam.base, preset)
    for variant in fam.variants:
        args = model_args(variant, preset)
        assert {k: v for k, v in args.items() if k in base} == base, variant


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_search_point_of_the_paper_preset_rebuilds_it(family):
    """The search's knobs describe the paper preset: its grid point maps back to the paper preset's arguments."""
    fam = FAMILIES[family]
    paper = model_args(fam.base, "paper")
    point = _paper_point(fam)
    assert point["width"] in fam.widths
    kwargs = fam.to_kwargs(point)
    norm = {k: tuple(v) if isinstance(v, list) else v for k, v in paper.items()}
    assert {k: norm.get(k) for k in kwargs} == {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def test_match_scale_is_the_reference_models_size_at_the_preset():
    sp, sm = match_scale("interir", "small")
    (p, m), (q, n) = sizes("interir", "small"), PAPER_SIZES["interir"]
    assert (sp, sm) == pytest.approx((p / q, m / n))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_SIZES))
def test_cached_paper_sizes_are_current(name):
    params, gmacs = paper_sizes(name, cached=False)
    assert params == PAPER_SIZES[name][0]
    assert gmacs == pytest.approx(PAPER_SIZES[name][1], rel=1e-6)

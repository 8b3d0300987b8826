"""The report's intervals: coverage in simulation, what they resample, pairing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.reporting.stats import MDIR_UNIT, bootstrap, expanded_levels, score_matrix, units_of

SOURCES, COMBOS = 12, 7


def _dataset(rng: np.random.Generator, source_sd: float = 0.3, residual_sd: float = 0.2) -> pd.DataFrame:
    """One MDIR-like test set with true mean 0: every source photo under seven combinations, one seed."""
    effect = rng.normal(0, source_sd, SOURCES)
    rows = [{"image": f"test/c{c}/s{s}.png", "unit": f"s{s}", "seed": 0, "psnr": effect[s] + rng.normal(0, residual_sd)}
            for s in range(SOURCES) for c in range(COMBOS)]
    return pd.DataFrame(rows)


def _image_level_percentile(frame: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    """The former scheme: test images resampled as if independent, plain percentile interval."""
    x = frame["psnr"].to_numpy()
    stats = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return tuple(np.quantile(stats, [0.025, 0.975]))


def test_interval_covers_the_true_mean_in_simulation_and_the_old_scheme_does_not() -> None:
    """Over 300 synthetic sets with a known mean (12 sources x 7 combinations, source sd 0.3 dB, residual sd
    0.2 dB), the nominal 95% interval covers it at least 93% of the time; resampling images does not."""
    rng = np.random.default_rng(1)
    hits_new = hits_old = 0
    trials = 300
    for t in range(trials):
        frame = _dataset(rng)
        est = bootstrap([score_matrix(frame, "psnr")], [1.0], units_of(frame), 1000, 0.95, seed=t)
        hits_new += est.low <= 0 <= est.high
        lo, hi = _image_level_percentile(frame, 1000, rng)
        hits_old += lo <= 0 <= hi
    assert hits_new / trials >= 0.93, hits_new / trials
    assert hits_old / trials < 0.93, hits_old / trials


def test_units_and_labels() -> None:
    frame = _dataset(np.random.default_rng(0))
    est = bootstrap([score_matrix(frame, "psnr")], [1.0], units_of(frame), 200, 0.95, ci_unit=MDIR_UNIT)
    assert (est.n, est.units, est.seeds, est.ci_unit) == (SOURCES * COMBOS, SOURCES, 1, MDIR_UNIT)
    # Without a unit column (results written before it existed), an MDIR image's unit is its file stem.
    assert units_of(frame.drop(columns="unit"))["test/c3/s5.png"] == "s5"


def test_paired_difference_cancels_the_shared_source_effect() -> None:
    """Two models scored on the same units: the interval of their difference resamples units jointly, so the
    large shared per-source effect cancels and a small constant gap is resolved."""
    rng = np.random.default_rng(2)
    a = _dataset(rng, source_sd=3.0, residual_sd=0.05)
    b = a.assign(psnr=a["psnr"] - 0.2 + rng.normal(0, 0.05, len(a)))
    units = units_of(a)
    diff = bootstrap([score_matrix(a, "psnr"), score_matrix(b, "psnr")], [1.0, -1.0], units, 1000, 0.95)
    assert diff.low > 0.1 and diff.high < 0.3 and diff.excludes_zero
    alone = bootstrap([score_matrix(a, "psnr")], [1.0], units, 1000, 0.95)
    assert alone.high - alone.low > 1.0  # the shared effect dominates each mean


def test_expanded_levels_approach_the_percentiles_with_many_units() -> None:
    lo12, hi12 = expanded_levels(0.95, 12)
    assert lo12 < 0.025 and hi12 > 0.975
    lo_many, _ = expanded_levels(0.95, 10_000)
    assert lo_many == pytest.approx(0.025, abs=5e-4)


def test_one_unit_has_no_interval() -> None:
    frame = _dataset(np.random.default_rng(0)).assign(unit="same")
    est = bootstrap([score_matrix(frame, "psnr")], [1.0], units_of(frame), 200, 0.95)
    assert est.ok and np.isnan(est.low) and est.units == 1

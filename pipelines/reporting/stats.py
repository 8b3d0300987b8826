"""The report's statistics: means and paired differences with bootstrap intervals over the independent unit.

**What is resampled.** Test images are not independent: every MDIR source photo appears under all seven
degradation combinations (and near-duplicate photos share a split group), so its images move together.
The bootstrap therefore resamples *units* (per-image column ``unit``: the source photo group on MDIR, the
clean image on SDIR sets, where hazy images of one scene share it) with all their images, and, when a model
has several seeds, its seeds independently. Two models compared on the same units are resampled together
(a paired design). Resampling images as if independent gave intervals half as wide as they should be
(tests/test_stats.py measures the coverage of both schemes in simulation).

**Which interval.** The percentile bootstrap under-covers with few units (about 92% for a nominal 95% with
12 units: it ignores that the spread is estimated from the units themselves). The interval is Hesterberg's
*expanded percentile* interval: the percentiles are taken at the level whose normal quantile is
``sqrt(n / (n - 1)) * t_{n-1}`` of the nominal one, n = the number of units (Hesterberg 2015, "What teachers
should know about the bootstrap", The American Statistician 69(4)). With one unit there is no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

MDIR_UNIT, SDIR_UNIT = "source photo", "image"


@dataclass(frozen=True)
class Estimate:
    """A point estimate, its interval, the numbers of test images, seeds and units, and what was resampled."""

    value: float
    low: float
    high: float
    n: int  # test images
    seeds: int
    units: int = 0  # independent units resampled
    ci_unit: str = ""  # their kind: "source photo" (MDIR) or "image" (SDIR)

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.value))

    @property
    def resampled(self) -> str:
        """What the interval resampled, for the ``ci_unit`` columns ("" without an interval)."""
        if not (np.isfinite(self.low) and self.ci_unit):
            return ""
        return self.ci_unit + (" and seed" if self.seeds > 1 else "")

    @property
    def excludes_zero(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high) and (self.low > 0 or self.high < 0))


NAN_EST = Estimate(float("nan"), float("nan"), float("nan"), 0, 0)


def unit_kind(set_name: str) -> str:
    """What an interval on ``set_name`` resamples."""
    return MDIR_UNIT if set_name.lower() == "mdir" else SDIR_UNIT


def units_of(frame: pd.DataFrame) -> pd.Series:
    """image -> independent unit: the per-image ``unit`` column; without one (older results), the MDIR
    image's file stem (its source photo) or the image itself."""
    if "unit" in frame.columns and frame["unit"].astype(str).str.len().gt(0).all():
        units = frame["unit"].astype(str)
    else:
        units = frame["image"].astype(str).map(lambda s: PurePosixPath(s).stem if "/" in s else s)
    return pd.Series(units.to_numpy(), index=frame["image"].to_numpy()).groupby(level=0).first()


def score_matrix(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seeds x images matrix of ``metric`` (images present for every seed only)."""
    if frame.empty:
        return pd.DataFrame()
    return frame.groupby(["seed", "image"], sort=True)[metric].mean().unstack("image").dropna(axis=1)


def expanded_levels(ci: float, n_units: int) -> tuple[float, float]:
    """The percentile levels of the expanded percentile interval for ``n_units`` units (see the module doc)."""
    from scipy import stats

    alpha = 1 - ci
    z = math.sqrt(n_units / (n_units - 1)) * float(stats.t.ppf(1 - alpha / 2, n_units - 1))
    tail = float(stats.norm.sf(z))
    return tail, 1 - tail


def bootstrap(mats: Sequence[pd.DataFrame], weights: Sequence[float], units: pd.Series, n_boot: int, ci: float,
              seed: int = 0, ci_unit: str = "") -> Estimate:
    """``sum_k w_k * mean(mat_k)`` over the images all matrices share, with its interval.

    Each matrix is seeds x images; ``units`` maps every image to its independent unit. A replicate draws the
    units with replacement (the same draw for every matrix: paired) and each matrix's seeds with replacement,
    and averages the drawn units' images with their multiplicities.
    """
    if not mats or any(m.empty for m in mats):
        return NAN_EST
    common = sorted(set.intersection(*(set(m.columns) for m in mats)))
    if not common:
        return NAN_EST
    arrs = [m[common].to_numpy(dtype=float) for m in mats]
    point = float(sum(w * a.mean() for w, a in zip(weights, arrs)))
    seeds = min(a.shape[0] for a in arrs)
    labels = units.reindex(common).fillna(pd.Series(common, index=common)).to_numpy()
    cluster_names, cluster_of = np.unique(labels, return_inverse=True)
    n_units = len(cluster_names)
    if n_units < 2 or n_boot <= 0:
        return Estimate(point, float("nan"), float("nan"), len(common), seeds, n_units, ci_unit)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    counts = np.zeros((n_boot, n_units))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    image_weight = counts[:, cluster_of]  # (n_boot, images): how often each image's unit was drawn
    total = image_weight.sum(axis=1)
    stats = np.zeros(n_boot)
    for w, a in zip(weights, arrs):
        s = a.shape[0]
        per_image = a[rng.integers(0, s, size=(n_boot, s))].mean(axis=1) if s > 1 else np.broadcast_to(a[0], (
            n_boot, a.shape[1]))
        stats += w * (image_weight * per_image).sum(axis=1) / total
    lo, hi = np.quantile(stats, expanded_levels(ci, n_units))
    return Estimate(point, float(lo), float(hi), len(common), seeds, n_units, ci_unit)

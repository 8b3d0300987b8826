"""The MDIR set's schema: ``manifest.csv`` columns, the seven combinations, the :class:`Pair` every
loader returns, and reading a split.

The synthesize stage writes this schema (:mod:`pipelines.data.synthesis`); train, evaluate and the
report read it through :func:`read_manifest`. SDIR loaders (:mod:`pipelines.data.sdir`) return the
same :class:`Pair`.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.common.env import UserError
from pipelines.data.imageio import read_image, to_uint8

MANIFEST = "manifest.csv"
SDIR_DIR = "sdir"  # <set>/sdir/<name>/...: the real single-degradation test pairs, copied by synthesize
# ``group``: the source photo's split group (near-duplicates share one): the unit the report's intervals resample.
MANIFEST_COLUMNS = ("file", "target", "source", "group", "split", "combination", "haze", "rain", "noise", "seed",
                    "sha256")
# Table 6 order; a component missing from a combination is level 0.
COMBINATIONS = ("haze+rain+noise", "haze+rain", "haze+noise", "rain+noise", "haze", "rain", "noise")


@dataclass(frozen=True)
class Pair:
    """A degraded input, its clean target, a name unique within its set, and (MDIR) its levels."""

    input: Path
    target: Path
    name: str
    combination: str = ""
    unit: str = ""  # the independent unit (MDIR: source photo group; SDIR: the clean image)
    haze: float = 0.0
    rain: float = 0.0
    noise: float = 0.0


def read_manifest(root: str | Path, split: str) -> list[Pair]:
    """Pairs of one split from ``root/manifest.csv``; errors name the file and the row."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: manifest not found (run 'interir-bench synthesize' first)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: manifest lacks column {missing[0]!r}")
        pairs = [
            Pair(root / r["file"], root / r["target"], Path(r["file"]).stem if split == "train" else r["file"],
                 r["combination"], r.get("group") or r["source"], float(r["haze"]), float(r["rain"]), float(r["noise"]))
            for r in reader
            if r["split"] == split
        ]
    if not pairs:
        raise UserError(f"{path}: no {split!r} rows")
    return pairs


def data_version(root: str | Path) -> str:
    """Short content hash of the manifest (which lists every file's sha256)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return "unknown"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Both images as uint8 HxWx3; a size mismatch is an error naming the input file."""
    x, y = read_image(pair.input), read_image(pair.target)
    if x.shape != y.shape:
        raise UserError(f"{pair.input}: size {x.shape[:2]} does not match its target {pair.target} {y.shape[:2]}")
    return to_uint8(x), to_uint8(y)

"""The MDIR set's schema: ``manifest.csv`` columns, the seven combinations, the :class:`Pair` every
loader returns, and reading a split.

The synthesize stage writes this schema (:mod:`pipelines.data.synthesis`); train, evaluate and the
report read it through :func:`read_manifest`. SDIR loaders (:mod:`pipelines.data.sdir`) return the
same :class:`Pair`.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.common.env import UserError
from pipelines.data.imageio import read_image, to_uint8

MANIFEST = "manifest.csv"
SDIR_DIR = "sdir"  # <set>/sdir/<name>/...: the real single-degradation test pairs, copied by synthesize
# ``group``: the source photo's split group (near-duplicates share one): the unit the report's intervals resample.
# ``sha256`` and ``target_sha256``: the contents of ``file`` and ``target``. Readers verify every file against them
# as they decode it (:func:`load_pair`), so :func:`data_version`, a hash of this file, versions the content.
MANIFEST_COLUMNS = ("file", "target", "source", "group", "split", "combination", "haze", "rain", "noise", "seed",
                    "sha256", "target_sha256")
# Table 6 order; a component missing from a combination is level 0.
_SHA256 = re.compile(r"[0-9a-f]{64}")
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
    sha256: str = ""  # MDIR: the input's and the target's content hashes (from the manifest), checked on reading
    target_sha256: str = ""


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
        pairs = []
        for line, r in enumerate(reader, start=2):
            if r["split"] != split:
                continue
            try:
                levels = float(r["haze"]), float(r["rain"]), float(r["noise"])
            except (TypeError, ValueError):
                raise UserError(f"{path}: line {line}: levels are not numbers") from None
            if not all(_SHA256.fullmatch(r[c] or "") for c in ("sha256", "target_sha256")):
                raise UserError(f"{path}: line {line}: missing or malformed sha256 (run 'interir-bench synthesize')")
            if not r["file"] or not r["target"] or Path(r["file"]).is_absolute() or ".." in Path(r["file"]).parts \
                    or Path(r["target"]).is_absolute() or ".." in Path(r["target"]).parts:
                raise UserError(f"{path}: line {line}: file and target must be paths inside {root}")
            pairs.append(Pair(root / r["file"], root / r["target"],
                              Path(r["file"]).stem if split == "train" else r["file"], r["combination"],
                              r.get("group") or r["source"], *levels, r["sha256"], r["target_sha256"]))
    if not pairs:
        raise UserError(f"{path}: no {split!r} rows")
    return pairs


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_pairs(pairs: list[Pair], workers: int = 4) -> None:
    """Check every file of ``pairs`` against its manifest sha256 (threads: hashlib releases the GIL), so a stage
    that reads only some of them (training samples) still refuses a dataset that is not what its manifest
    says. The readers verify each file again as they decode it (:func:`load_pair`): that catches a file that
    changes afterwards. Cost: ``benchmarks/bench_verify.py``."""
    from concurrent.futures import ThreadPoolExecutor

    files = {p.input: p.sha256 for p in pairs if p.sha256} | {p.target: p.target_sha256 for p in pairs
                                                              if p.target_sha256}

    def check(item: tuple[Path, str]) -> None:
        path, expected = item
        try:
            got = file_sha256(path)
        except FileNotFoundError:
            raise UserError(f"{path}: file not found (listed in the manifest)") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror})") from None
        if got != expected:
            raise UserError(f"{path}: content does not match the sha256 in the manifest (the dataset changed after "
                            "synthesis, or a synthesis was interrupted; run 'interir-bench synthesize')")

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(check, sorted(files.items())))


def data_version(root: str | Path) -> str:
    """Short content hash of the manifest (which lists every file's sha256)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return "unknown"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Both images as uint8 HxWx3, each verified against its manifest sha256 (MDIR pairs); a size mismatch is an
    error naming the input file."""
    x, y = read_image(pair.input, pair.sha256 or None), read_image(pair.target, pair.target_sha256 or None)
    if x.shape != y.shape:
        raise UserError(f"{pair.input}: size {x.shape[:2]} does not match its target {pair.target} {y.shape[:2]}")
    return to_uint8(x), to_uint8(y)

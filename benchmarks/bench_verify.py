"""Cost of verifying the dataset's sha256s: once at the start of training, and on every decode.

Train verifies every file of its split against the manifest before the first step
(:func:`pipelines.data.manifest.verify_pairs`) and every reader verifies the bytes it decodes
(:func:`pipelines.data.imageio.read_image` with ``sha256``). This measures both on synthetic degraded
images at the crop sizes of the smoke (128) and small (256) profiles, written as the synthesize stage
writes them (PNG, compress level 1), read from the page cache, and extrapolates to each profile's file
count (train pairs + their clean targets).

    .venv/bin/python benchmarks/bench_verify.py [--n 200] [--out benchmarks/results/verify.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.data.imageio import read_image, write_image  # noqa: E402
from pipelines.data.manifest import Pair, file_sha256, verify_pairs  # noqa: E402

# Files training reads per profile: train pairs + clean targets (with the shared data: docs/dataset.md).
PROFILES = {"smoke": (128, 48 + 6), "small": (256, 2576 + 161)}


def _median_time(fn, items, repeats: int = 3) -> float:
    """Median over ``repeats`` of the seconds per item of ``fn`` over ``items``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        times.append((time.perf_counter() - t0) / len(items))
    return statistics.median(times)


def measure(size: int, n: int, folder: Path) -> dict:
    from skimage import data

    photo = data.astronaut().astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        top, left = rng.integers(0, photo.shape[0] - size, 2)
        img = np.clip(photo[top : top + size, left : left + size] + rng.normal(0, 0.08, (size, size, 3)), 0, 1)
        write_image(folder / f"{size}_{i}.png", img)
        paths.append(folder / f"{size}_{i}.png")
    hashes = {p: file_sha256(p) for p in paths}  # also warms the page cache
    pairs = [Pair(p, p, p.stem, sha256=h, target_sha256=h) for p, h in hashes.items()]
    t0 = time.perf_counter()
    verify_pairs(pairs)
    upfront = (time.perf_counter() - t0) / n
    return {
        "size": size, "files": n, "mean_bytes": int(np.mean([p.stat().st_size for p in paths])),
        "sha256_ms": 1e3 * _median_time(file_sha256, paths),
        "verify_pairs_ms_per_file": 1e3 * upfront,
        "decode_ms": 1e3 * _median_time(read_image, paths),
        "decode_verified_ms": 1e3 * _median_time(lambda p: read_image(p, hashes[p]), paths),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/verify.json"))
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for profile, (size, files) in PROFILES.items():
            r = measure(size, a.n, Path(tmp))
            r["profile_files"] = files
            r["upfront_total_s"] = files * r["verify_pairs_ms_per_file"] / 1e3
            r["per_read_overhead_pct"] = 100 * (r["decode_verified_ms"] / r["decode_ms"] - 1)
            results[profile] = r
            print(profile, json.dumps(r))
    out = {"benchmark": "dataset sha256 verification: up front (train) and on every decode",
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg": os.getloadavg()},
           "date": dt.date.today().isoformat(), "results": results}
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Synthesis throughput: images/s at 481x321 (CBSD68 size), haze + rain + noise on, PNG writing included.

Measures the per-output work of the synthesize stage (degrade + atomic PNG write + sha256 of the
file) in one process and in one process per core, and the time of each operator. Source decoding
is left out: the stage reads each source once for all of its outputs.

    .venv/bin/python benchmarks/bench_synthesis.py [--n 120] [--out benchmarks/results/synthesis.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.data.degradations import Levels, add_haze, add_noise, add_rain, degrade, ground_plane_depth  # noqa: E402
from pipelines.data.imageio import write_image  # noqa: E402

H, W = 321, 481


def _source() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.coffee()[40 : 40 + H, 60 : 60 + W].astype(np.float32) / 255.0)


def _levels(i: int) -> Levels:
    rng = np.random.default_rng(i)
    return Levels(haze=float(rng.uniform(60, 150)), rain=float(rng.uniform(50, 300)), noise=float(rng.uniform(0, 50)))


def _work(args: tuple[int, int, str]) -> int:
    """Degrade and write images start..stop-1 (one worker's share)."""
    import cv2

    cv2.setNumThreads(1)
    start, stop, folder = args
    img = _source()
    depth = ground_plane_depth(H, W)
    for i in range(start, stop):
        path = Path(folder) / f"{i}.png"
        write_image(path, degrade(img, _levels(i), depth, i))
        hashlib.sha256(path.read_bytes()).hexdigest()
    return stop - start


def _throughput(n: int, procs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        shares = [(k * n // procs, (k + 1) * n // procs, tmp) for k in range(procs)]
        if procs == 1:
            _work((0, 2, tmp))  # warm-up (imports, allocator)
            t0 = time.perf_counter()
            done = _work(shares[0])
        else:
            with mp.get_context("spawn").Pool(procs) as pool:
                pool.map(_work, [(0, 1, tmp)] * procs)  # start and warm every worker first
                t0 = time.perf_counter()
                done = sum(pool.map(_work, shares))
        return done / (time.perf_counter() - t0)


def _op_times(reps: int = 20) -> dict[str, float]:
    import cv2

    cv2.setNumThreads(1)
    img, depth = _source(), ground_plane_depth(H, W)
    rng = np.random.default_rng(0)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        steps = {
            "haze": lambda: add_haze(img, 90.0, depth),
            "rain": lambda: add_rain(img, 200.0, rng),
            "noise": lambda: add_noise(img, 25.0, rng),
            "png_write": lambda: write_image(Path(tmp) / "x.png", img),
        }
        for name, fn in steps.items():
            fn()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            out[name] = round((time.perf_counter() - t0) / reps * 1000, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=120, help="images per measurement")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/synthesis.json"))
    args = p.parse_args(argv)
    import cv2
    import PIL

    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    ops = _op_times()
    one = _throughput(args.n, 1)
    allc = _throughput(args.n, cores) if cores > 1 else one
    result = {
        "benchmark": "MDIR synthesis throughput (degrade haze+rain+noise, PNG write, sha256)",
        "image_size_wxh": [W, H],
        "images_per_measurement": args.n,
        "one_process_images_per_s": round(one, 2),
        "all_cores_images_per_s": round(allc, 2),
        "all_cores_processes": cores,
        "per_core_images_per_s": round(allc / cores, 2),
        "goal_images_per_s_per_core": 10,
        "meets_goal": bool(one >= 10),
        "op_ms": ops,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": cores,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "pillow": PIL.__version__,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "note": "shared machine: other jobs may have run concurrently (see load average)",
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

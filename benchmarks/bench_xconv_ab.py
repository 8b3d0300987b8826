"""A/B of the explainable conv against an earlier revision of ``interir/xconv.py``, and both against nn.Conv2d.

Loads ``interir/xconv.py`` as of ``--rev`` (``git show``) beside the working copy and times forward +
backward of the depthwise 3x3 case (batch 8, 64 channels, 64x64) in blocks: every round runs each
module ``--block`` times in a row (the first two discarded as warm-up), rounds interleave the modules
so that load from other jobs hits them alike. Reports min and median per module and their ratios to
the plain conv. Writes ``benchmarks/results/xconv_ab.json`` (machine and load noted).

    .venv/bin/python benchmarks/bench_xconv_ab.py [--rev ed012d6] [--rounds 6] [--block 10]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_train import machine  # noqa: E402

from interir.xconv import ExplainableConv2d  # noqa: E402
from pipelines.common.files import write_text  # noqa: E402


def load_revision(rev: str, folder: Path, source: str = "interir/xconv.py"):
    """The repository file ``source`` at ``rev`` as a stand-alone module (its imports resolve to the working copy)."""
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{source}"], check=True,
                         capture_output=True, text=True).stdout
    name = Path(source).stem + "_ref"
    path = folder / f"{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="ed012d6", help="git revision of the reference xconv.py")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "xconv_ab.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ref = load_revision(a.rev, Path(tmp))
        mods = {"plain": nn.Conv2d(64, 64, 3, padding=1, groups=64),
                f"xconv@{a.rev}": ref.ExplainableConv2d(64, 64, 3, padding=1, groups=64),
                "xconv": ExplainableConv2d(64, 64, 3, padding=1, groups=64),
                "xconv_tau": ExplainableConv2d(64, 64, 3, padding=1, groups=64, ste_input_grad=False)}
        x = torch.randn(8, 64, 64, 64)
        g = torch.randn(8, 64, 64, 64)
        times: dict[str, list[float]] = {k: [] for k in mods}
        for _ in range(a.rounds):
            for k, m in mods.items():
                for i in range(a.block):
                    xi = x.detach().requires_grad_(True)
                    t0 = time.perf_counter()
                    (m(xi) * g).sum().backward()
                    dt = time.perf_counter() - t0
                    m.zero_grad(set_to_none=True)
                    if i >= 2:
                        times[k].append(dt)
    res = {}
    for name, stat in (("min", min), ("median", statistics.median)):
        v = {k: stat(t) for k, t in times.items()}
        res[name] = {"seconds": v, "ratio_to_plain": {k: t / v["plain"] for k, t in v.items()}}
        print(name, {k: round(r, 2) for k, r in res[name]["ratio_to_plain"].items()}, flush=True)
    out = {"benchmark": "explainable depthwise 3x3 conv, forward+backward, batch 8, 64 ch, 64x64: A/B of revisions",
           "reference_revision": a.rev, "timed_runs_per_module": len(times["plain"]), "machine": machine(a.threads),
           "results": res}
    write_text(a.out, json.dumps(out, indent=2) + "\n")  # atomic
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

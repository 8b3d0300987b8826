"""Wall time of the pipeline from a fresh clone: ``interir-bench repro`` (``make repro``'s scheme: JOBS jobs side by
side, ``train.threads`` threads each) against the former scheme (plain ``dvc repro``: one stage at a time, every
core in each stage), in one run.

Each scheme runs in its own fresh clone of HEAD (no DVC cache, no results, no MLflow store) with this checkout's
environment already built, so the figure is the pipeline alone (``make repro`` adds the install check). For the
former scheme the clone's ``train.threads`` and ``evaluate.threads`` are set to the core count, as the stages ran
before; its results therefore differ in the last float bits, not in the work done. After the new scheme the
benchmark records whether the clone's ``git status`` is clean (the committed ``dvc.lock`` reproduced byte for
byte). Writes ``benchmarks/results/repro_<profile>.json`` (machine, commit, load average before each run)::

    python benchmarks/bench_repro.py                   # both schemes, the params.yaml profile (smoke)
    python benchmarks/bench_repro.py --schemes new     # make repro's scheme only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.common.config import load_params  # noqa: E402
from pipelines.common.files import write_text  # noqa: E402

JOB_LINE = re.compile(r"^\s*\[\d+/\d+\] (?P<job>.+) \((?P<s>\d+) s\)$")


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _set_threads(params: Path, threads: int) -> None:
    """``train.threads`` and ``evaluate.threads`` := ``threads`` in the clone's params.yaml (line edit: keeps the
    file as it is otherwise)."""
    out, section = [], ""
    for line in params.read_text().splitlines(keepends=True):
        if re.match(r"^\S", line):
            section = line.split(":", 1)[0]
        if section in ("train", "evaluate") and re.match(r"^  threads:", line):
            line = f"  threads: {threads}\n"
        out.append(line)
    params.write_text("".join(out))


def run_scheme(scheme: str, workdir: Path, cores: int) -> dict:
    clone = workdir / scheme
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if scheme == "former":
        _set_threads(clone / "params.yaml", cores)
        cmd = [sys.executable, "-m", "dvc", "repro"]
    else:
        cmd = [sys.executable, "-m", "pipelines.commands.repro"]
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench_repro: {scheme} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    out: dict = {"command": " ".join(Path(c).name if c == sys.executable else c for c in cmd),
                 "load_average_before": [round(v, 2) for v in load], "wall_s": round(wall, 1)}
    if scheme == "new":
        out["jobs_s"] = {m["job"]: int(m["s"]) for m in map(JOB_LINE.match, proc.stdout.splitlines()) if m}
        out["git_status_clean_after"] = _git("status", "--porcelain", cwd=clone) == ""
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--schemes", nargs="+", choices=("new", "former"), default=["new", "former"])
    p.add_argument("--out", default=None, help="default: benchmarks/results/repro_<profile>.json")
    a = p.parse_args()
    params = load_params(REPO / "params.yaml")
    cores = os.cpu_count() or 1
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "") if Path("/proc/cpuinfo").is_file() else platform.processor()
    result: dict = {"machine": {"cpu": cpu, "logical_cpus": cores, "platform": platform.platform()},
                    "commit": _git("rev-parse", "HEAD"), "profile": params.profile,
                    "models": len(params.models), "seeds": len(params.seeds),
                    "train_threads": params.train.threads, "schemes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-repro-") as tmp:
        for scheme in a.schemes:
            result["schemes"][scheme] = run_scheme(scheme, Path(tmp), cores)
            print(f"{scheme}: {result['schemes'][scheme]['wall_s']:.0f} s", flush=True)
    if {"new", "former"} <= set(result["schemes"]):
        result["speedup_new_vs_former"] = round(result["schemes"]["former"]["wall_s"]
                                                / result["schemes"]["new"]["wall_s"], 2)
    out = Path(a.out) if a.out else REPO / "benchmarks" / "results" / f"repro_{params.profile}.json"
    write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

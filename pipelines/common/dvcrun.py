"""DVC commands run beside other DVC processes in one workspace: what ``interir-bench repro`` (local workers)
and ``interir-bench cluster`` (SLURM jobs on a shared checkout) both do.

DVC locks the repository only while it reads and writes ``dvc.lock``, not while a stage's command runs, so
several ``dvc repro -s TARGET`` in one workspace run side by side; the start-up window in which two of them
both want the lock (``Unable to acquire lock``, treeverse/dvc#10465) is retried after a short random wait.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

from pipelines.common import paths
from pipelines.common.env import UserError

LOCK_MESSAGE = "Unable to acquire lock"


def dvc(args: list[str], log: Path, tries: int = 30) -> None:
    """Run ``dvc ARGS``, its output appended to ``log``; retry while another DVC process holds the lock."""
    for attempt in range(tries):
        with log.open("a") as fh:
            fh.write(f"$ dvc {' '.join(args)}\n")
            fh.flush()
            start = fh.tell()
            proc = subprocess.run(["dvc", *args], stdout=fh, stderr=subprocess.STDOUT, check=False)
        if proc.returncode == 0:
            return
        with log.open(errors="replace") as fh:
            fh.seek(start)
            output = fh.read()
        if LOCK_MESSAGE not in output:
            raise UserError(f"dvc {' '.join(args)} failed (exit {proc.returncode}); log: {log}\n{last_lines(output)}")
        time.sleep(0.5 + random.random() * min(5.0, 0.5 * (attempt + 1)))
    raise UserError(f"dvc {' '.join(args)}: the repository lock stayed busy after {tries} tries; log: {log}")


def last_lines(text: str, n: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def chains(models: list[str], seeds: list[int]) -> list[list[str]]:
    """The independent DVC targets after ``synthesize``: one train -> evaluate chain per (model, seed),
    ``score_inputs`` and ``profile``."""
    out = [[f"train@{m}-{s}", f"evaluate@{m}-{s}"] for m in models for s in seeds]
    return [*out, ["score_inputs"], ["profile"]]


def build_page(params_path: Path) -> None:
    """``reports/index.html`` when DVC restored the report's outputs from its cache or a remote instead of
    running the stage (the page, with its run links, is not a DVC output)."""
    if not (paths.REPORT_DIR / "index.html").is_file():
        subprocess.run([sys.executable, "-m", "pipelines.stages.report", "--params", str(params_path)], check=True)

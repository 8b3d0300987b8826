"""DVC stage ``report``: ``reports/index.html`` with the paper's tables next to ours, the claims ledger and figures.

``python -m pipelines.stages.report`` (what ``dvc.yaml`` runs) or ``interir-bench report``.
The work: :func:`pipelines.reporting.build.build_report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import entry, paths
from pipelines.common.config import PROFILES, load_params


def _parser() -> argparse.ArgumentParser:
    p = entry.ArgumentParser(prog="interir-bench report", description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(paths.PARAMS))
    p.add_argument("--profile", choices=PROFILES)
    p.add_argument("--eval-dir", default=str(paths.EVAL_DIR))
    p.add_argument("--train-dir", default=str(paths.TRAIN_DIR))
    p.add_argument("--data", default=str(paths.DATA_DIR), help="synthesized set (manifest.csv)")
    p.add_argument("--profile-json", default=str(paths.PROFILE_JSON))
    p.add_argument("--latency-json", default=str(paths.LATENCY_JSON),
                   help="CPU latencies measured by benchmarks/bench_latency.py (Table 8)")
    p.add_argument("--out", default=str(paths.REPORT_DIR))
    p.add_argument("--no-paper-runs", action="store_true", help="do not log the paper's numbers to MLflow")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    params = load_params(a.params, a.profile)
    from pipelines.reporting.build import build_report

    summary = build_report(params, Path(a.out), Path(a.eval_dir), Path(a.train_dir), Path(a.data),
                           Path(a.profile_json), Path(a.latency_json), log_paper=not a.no_paper_runs)
    print(f"report: {Path(a.out) / 'index.html'} ({len(summary['figures'])} figures, "
          f"claims {summary['claims']}, {summary['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(entry.run("report", main))

"""DVC stage ``score_inputs``: the "no restoration" baseline, every degraded test input scored against its target.

``python -m pipelines.stages.score_inputs`` (what ``dvc.yaml`` runs). The rows sit beside the models' in
``results/eval/input/`` and give Tables 1-5 their "no restoration" row and the claims their below-the-input rule.
The work: :func:`pipelines.engine.evaluation.score_inputs`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import entry, paths
from pipelines.common.config import PROFILES, load_params


def _parser() -> argparse.ArgumentParser:
    p = entry.ArgumentParser(prog="interir-bench score-inputs", description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(paths.PARAMS))
    p.add_argument("--profile", choices=PROFILES)
    p.add_argument("--data", default=str(paths.DATA_DIR), help="synthesized set (manifest.csv, sdir/)")
    p.add_argument("--out", default=str(paths.EVAL_DIR / paths.INPUT_RUN), help="results folder")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    params = load_params(a.params, a.profile)
    from pipelines.engine.evaluation import score_inputs

    metrics = score_inputs(params, Path(a.data), Path(a.out))
    mdir = metrics["MDIR"]
    print(f"no restoration, MDIR: PSNR {mdir['psnr']:.2f} dB, SSIM {mdir['ssim']:.4f} over {mdir['n']} images "
          f"-> {Path(a.out) / paths.EVAL_METRICS}")
    return 0


if __name__ == "__main__":
    sys.exit(entry.run("score-inputs", main))

"""DVC stage ``evaluate@<model>-<seed>``: score a trained model (PSNR/SSIM on RGB and Y) on MDIR and SDIR sets.

The SDIR sets are the real pairs the synthesize stage copied into ``<data>/sdir/`` from the data root.

``python -m pipelines.stages.evaluate MODEL --seed S`` (what ``dvc.yaml`` runs) or ``interir-bench evaluate``.
The work: :func:`pipelines.engine.evaluation.evaluate_run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import entry, paths
from pipelines.common.config import PROFILES, check_seed, load_params


def _parser() -> argparse.ArgumentParser:
    from pipelines.engine.metrics import BACKENDS

    p = entry.ArgumentParser(prog="interir-bench evaluate", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", default=str(paths.PARAMS))
    p.add_argument("--profile", choices=PROFILES)
    p.add_argument("--data", default=str(paths.DATA_DIR), help="synthesized set (manifest.csv)")
    p.add_argument("--train-dir", default=str(paths.TRAIN_DIR), help="where train wrote <model>-s<seed>/model.pt")
    p.add_argument("--checkpoint", help="evaluate this checkpoint instead")
    p.add_argument("--out", default=str(paths.EVAL_DIR), help="results go to OUT/<model>-s<seed>/")
    p.add_argument("--no-mlflow", action="store_true")
    p.add_argument("--metrics", choices=BACKENDS, default="fast",
                   help="metrics backend: fast (default, validated against pyiqa to 1e-4) or pyiqa (reference)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    check_seed(a.seed)
    params = load_params(a.params, a.profile)
    from pipelines.engine.evaluation import evaluate_run

    ckpt = Path(a.checkpoint) if a.checkpoint else paths.model_file(a.train_dir, a.model, a.seed)
    out_dir = paths.eval_run_dir(a.out, a.model, a.seed)
    metrics = evaluate_run(a.model, a.seed, params, ckpt, Path(a.data), out_dir, metrics_backend=a.metrics,
                           track=not a.no_mlflow)
    mdir = metrics["MDIR"]
    print(f"{a.model} (seed {a.seed}) MDIR: PSNR {mdir['psnr']:.2f} dB, SSIM {mdir['ssim']:.4f} "
          f"over {mdir['n']} images -> {out_dir / paths.EVAL_METRICS}")
    return 0


if __name__ == "__main__":
    sys.exit(entry.run("evaluate", main))

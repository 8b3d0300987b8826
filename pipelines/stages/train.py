"""DVC stage ``train@<model>-<seed>``: train one registered model (resumable, tracked in MLflow).

``python -m pipelines.stages.train MODEL --seed S`` (what ``dvc.yaml`` runs) or ``interir-bench train``.
The loop: :mod:`pipelines.engine.loop`. Data parallel: ``torchrun --nproc_per_node N -m pipelines.stages.train``,
or the stage's own command with ``INTERIR_NPROC_PER_NODE=N`` set (it then starts itself under torchrun: what a
multi-GPU cluster job does, :mod:`pipelines.engine.distributed`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipelines.common import entry, paths
from pipelines.common.config import PROFILES, check_seed, load_params
from pipelines.common.env import UserError


def _parser() -> argparse.ArgumentParser:
    p = entry.ArgumentParser(prog="interir-bench train", description=__doc__.splitlines()[0])
    p.add_argument("model", help="registered model name (see 'interir-bench models')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", default=str(paths.PARAMS), help="params file (default: params.yaml)")
    p.add_argument("--profile", choices=PROFILES, help="override the params profile")
    p.add_argument("--data", default=str(paths.DATA_DIR), help="synthesized set (manifest.csv)")
    p.add_argument("--out", default=str(paths.TRAIN_DIR), help="final checkpoint and summary go to OUT/<model>-s<seed>")
    p.add_argument("--ckpt-dir", default=str(paths.CKPT_DIR), help="resume checkpoints go to CKPT_DIR/<model>-s<seed>")
    p.add_argument("--no-mlflow", action="store_true", help="do not track the run in MLflow")
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
    check_seed(a.seed)
    from pipelines.engine.distributed import relaunch_under_torchrun

    status = relaunch_under_torchrun("pipelines.stages.train", argv)
    if status is not None:
        return status
    params = load_params(a.params, a.profile)
    from interir.registry import get_card, list_models

    if a.model not in list_models():
        raise UserError(f"unknown model {a.model!r}; known: {', '.join(list_models())}")
    if not get_card(a.model).trainable:
        raise UserError(f"model {a.model!r} is built for sizing only (random weights; interir-bench models {a.model})")
    import torch

    from pipelines.engine.loop import train

    torch.set_num_threads(params.train.threads)
    name = paths.run_name(a.model, a.seed)
    summary = train(a.model, params, a.seed, Path(a.data), Path(a.ckpt_dir) / name, Path(a.out) / name,
                    track=not a.no_mlflow, stop_after=a.stop_after)
    if "stopped_at" not in summary and int(os.environ.get("RANK", "0")) == 0:
        loss = "n/a" if summary["final_loss"] is None else f"{summary['final_loss']:.4f}"
        print(f"trained {a.model} (seed {a.seed}): loss {loss}, "
              f"{summary['it_per_s']:.2f} it/s -> {Path(a.out) / name / paths.MODEL_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(entry.run("train", main))

"""DVC stage ``synthesize``: the MDIR train/test sets (``datasets/mdir``) from clean real photos.

``python -m pipelines.stages.synthesize`` (what ``dvc.yaml`` runs) or ``interir-bench synthesize``.
The work and the output contract: :mod:`pipelines.data.synthesis`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import entry, paths
from pipelines.common.config import PROFILES, load_params
from pipelines.common.env import UserError


def _parser() -> argparse.ArgumentParser:
    p = entry.ArgumentParser(prog="interir-bench synthesize", description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(paths.PARAMS), help="params file (default: params.yaml)")
    p.add_argument("--profile", choices=PROFILES, help="profile to use (default: the params file's)")
    p.add_argument("--data-root", help="folder of clean images (default: params data.root, $INTERIR_DATA, "
                                       "else the scikit-image photos)")
    p.add_argument("--out", default=str(paths.DATA_DIR), help=f"output folder (default: {paths.DATA_DIR})")
    p.add_argument("--workers", type=int, help="processes (default: params synthesize.workers; 0 = all cores)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = load_params(args.params, args.profile)
    cfg = params.synthesize
    if args.workers is not None and args.workers < 0:
        raise UserError("--workers must be >= 0")
    from pipelines.data.manifest import COMBINATIONS
    from pipelines.data.sources import resolve_data_root
    from pipelines.data.synthesis import synthesize

    root = resolve_data_root(args.data_root, params.data.root)
    meta = synthesize(cfg, Path(args.out), root, params.train.patch,
                      cfg.workers if args.workers is None else args.workers, params.profile,
                      log=lambda m: print(m, file=sys.stderr))
    c = meta["counts"]
    where = meta["data_root"] or "scikit-image photos"
    print(f"synthesized {c['test_images']} test images ({c['test_sources']} sources x {len(COMBINATIONS)}) and "
          f"{c['train_pairs']} train pairs ({c['train_sources']} sources) from {where} into {args.out}"
          + (f"; skipped {c['sources_skipped']} source(s)" if c["sources_skipped"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(entry.run("synthesize", main))

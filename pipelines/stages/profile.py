"""DVC stage ``profile`` (``--stage``): params, MACs and CPU latency of every model of params.yaml; or of one model.

``python -m pipelines.stages.profile --stage`` (what ``dvc.yaml`` runs) writes ``results/profile.json``;
``interir-bench profile MODEL [--preset P] --json`` profiles one model. Counting: :mod:`pipelines.engine.profiling`.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipelines.common import entry, paths
from pipelines.common.config import PROFILES, load_params
from pipelines.common.env import UserError


def _parser() -> argparse.ArgumentParser:
    from pipelines.engine.profiling import CONVENTION

    p = entry.ArgumentParser(prog="interir-bench profile", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Convention: " + CONVENTION)
    p.add_argument("model", nargs="?", help="registered model name (interir-bench models)")
    p.add_argument("--preset", default="smoke", choices=PROFILES)
    p.add_argument("--size", type=int, default=256, help="square input side (default 256)")
    p.add_argument("--repeats", type=int, default=3, help="latency repeats (median)")
    p.add_argument("--no-latency", action="store_true", help="skip the CPU latency measurement")
    p.add_argument("--meta", action="store_true", help="params and FlopCounterMode MACs only, on the meta device")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: also JSON)")
    p.add_argument("--stage", action="store_true", help="DVC stage: profile every model of params.yaml")
    p.add_argument("--params", default=str(paths.PARAMS), help="params file for --stage")
    p.add_argument("--out", default=str(paths.PROFILE_JSON), help="output file for --stage")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    from pipelines.engine.profiling import profile_all, profile_model

    if args.stage:
        if args.model:
            p.error("--stage profiles the models of params.yaml; give no MODEL")
        from pipelines.common.files import write_text

        result = profile_all(load_params(args.params))
        write_text(args.out, json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(json.dumps({m: sorted(v) for m, v in result.items()}) if not args.json else json.dumps(result))
        return 0
    if not args.model:
        p.error("MODEL is required (or --stage)")
    if not (8 <= args.size <= 4096 and 1 <= args.repeats <= 1000):
        raise UserError(f"--size must be in [8, 4096] and --repeats in [1, 1000], got {args.size} and {args.repeats}")
    res = profile_model(args.model, args.preset, args.size, args.repeats,
                        fvcore=not args.meta, latency=not (args.meta or args.no_latency))
    print(json.dumps(res, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(entry.run("profile", main))

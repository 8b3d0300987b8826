"""``interir-bench``: one console script, one subcommand per stage or tool.

Each subcommand lives in its own module with a ``main(argv) -> int``; modules are
imported only when their subcommand runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipelines import env

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "models": ("pipelines.models_cmd", "list registered models (one per line) or show a model card"),
    "synthesize": ("pipelines.synthesize", "DVC stage: synthesize the MDIR train/test sets from real photos"),
    "degrade": ("pipelines.degrade", "apply haze/rain/noise to one image"),
    "train": ("pipelines.train", "DVC stage: train one model (resumable, tracked in MLflow)"),
    "evaluate": ("pipelines.evaluate", "DVC stage: evaluate a trained model (PSNR/SSIM, RGB and Y)"),
    "profile": ("pipelines.profile", "params, MACs and CPU latency of a model (or the DVC stage)"),
    "report": ("pipelines.report", "DVC stage: build reports/index.html, paper vs reproduced"),
    "restore": ("pipelines.restore", "restore your own images with a trained checkpoint"),
    "ui": ("pipelines.ui", "start the MLflow UI on 127.0.0.1"),
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="interir-bench",
        description="Benchmark and reproducibility harness for InterIR (arXiv 2511.10166).",
        epilog="Run 'interir-bench <command> --help' for a command's options.",
    )
    sub = p.add_subparsers(dest="command", metavar="<command>")
    for name, (_, helptext) in SUBCOMMANDS.items():
        sub.add_parser(name, help=helptext, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    env.apply_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in SUBCOMMANDS:
        parser.error(f"unknown command {cmd!r}")
    module_name = SUBCOMMANDS[cmd][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            print(f"interir-bench {cmd}: not available yet in this version", file=sys.stderr)
            return 3
        raise
    try:
        return int(module.main(rest) or 0)
    except (CLIError, env.UserError) as exc:
        print(f"interir-bench {cmd}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interir-bench {cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``interir-bench``: one console script, one subcommand per DVC stage or tool.

Each subcommand is a module with a ``main(argv) -> int`` (:mod:`pipelines.stages` for the DVC stages,
:mod:`pipelines.commands` for the tools), imported only when its subcommand runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipelines.common import entry

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "models": ("pipelines.commands.models", "list registered models (one per line) or show a model card"),
    "synthesize": ("pipelines.stages.synthesize", "DVC stage: synthesize the MDIR train/test sets from real photos"),
    "degrade": ("pipelines.commands.degrade", "apply haze/rain/noise to one image"),
    "train": ("pipelines.stages.train", "DVC stage: train one model (resumable, tracked in MLflow)"),
    "evaluate": ("pipelines.stages.evaluate", "DVC stage: evaluate a trained model (PSNR/SSIM, RGB and Y)"),
    "score-inputs": ("pipelines.stages.score_inputs", "DVC stage: score the degraded inputs (no restoration)"),
    "profile": ("pipelines.stages.profile", "params, MACs and CPU latency of a model (or the DVC stage)"),
    "report": ("pipelines.stages.report", "DVC stage: build reports/index.html, paper vs reproduced"),
    "restore": ("pipelines.commands.restore", "restore your own images with a trained checkpoint"),
    "ui": ("pipelines.commands.ui", "start the MLflow UI on 127.0.0.1"),
    "repro": ("pipelines.commands.repro", "dvc repro with independent stages run side by side (make repro)"),
    "export-run": ("pipelines.commands.export_run", "copy a finished run's tables, ledger and provenance into git"),
    "plots": ("pipelines.commands.plots", "dvc plots show|diff with the Vega libraries inline (renders offline)"),
    "cluster": ("pipelines.commands.cluster", "submit the train/evaluate chains as SLURM jobs; gather the results"),
}


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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in SUBCOMMANDS:
        parser.error(f"unknown command {cmd!r}")
    module = importlib.import_module(SUBCOMMANDS[cmd][0])
    return entry.run(cmd, module.main, rest)


if __name__ == "__main__":
    sys.exit(main())

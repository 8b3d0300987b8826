"""How every ``interir-bench`` subcommand and ``python -m pipelines.stages.<stage>`` starts and fails.

A user error (:class:`~pipelines.common.env.UserError`: a bad file, flag or params key) becomes one
line on stderr and exit status 2; Ctrl-C exits 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from pipelines.common import env


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad flag or value is a :class:`~pipelines.common.env.UserError`
    (``interir-bench <cmd>: error: argument --seed: invalid int value: 'x' (see --help)``, exit 2), not
    argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        raise env.UserError(f"{message} (see --help)")


def run(prog: str, main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Call ``main(argv)`` with the process defaults applied; map errors to exit codes."""
    env.apply_defaults()
    try:
        return int(main(list(sys.argv[1:] if argv is None else argv)) or 0)
    except env.UserError as exc:
        print(f"interir-bench {prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interir-bench {prog}: interrupted", file=sys.stderr)
        return 130

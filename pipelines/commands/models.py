"""``interir-bench models``: list registered models, or print one model card."""

from __future__ import annotations

import argparse
import dataclasses
import json

from interir.registry import get_card, list_models, model_args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="interir-bench models", description=__doc__.splitlines()[0])
    p.add_argument("name", nargs="?", help="show this model's card and presets")
    a = p.parse_args(argv)
    if a.name is None:
        print("\n".join(list_models()))
        return 0
    from pipelines.common.env import UserError

    try:
        card = get_card(a.name)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    info = dataclasses.asdict(card)
    info["presets"] = {pr: model_args(a.name, pr) for pr in ("smoke", "small", "paper")}
    print(json.dumps(info, indent=2, default=list))
    return 0

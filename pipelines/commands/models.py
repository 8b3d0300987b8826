"""``interir-bench models``: list registered models, or print one model card with the paper's numbers."""

from __future__ import annotations

import dataclasses
import json
import math
from numbers import Number
from typing import Any

from interir.registry import get_card, list_models, model_args
from pipelines.common import entry


def paper_numbers(paper_rows: tuple[tuple[str, str], ...]) -> dict[str, dict[str, Any]]:
    """The paper's numbers of a card's rows, from the reference CSVs: {"table4: baseline + RESM": {column: value}}.

    A row of an MDIR or SDIR table is one line per key (combination, test set), so those give
    {key: {column: value}}; empty cells (a baseline's gain) are left out.
    """
    from pipelines.reporting.inputs import reference_table
    from pipelines.reporting.specs import spec

    out: dict[str, dict[str, Any]] = {}
    for table, label in paper_rows:
        s = spec(table)
        ref = reference_table(s.csv)
        rows = ref[ref[s.label_col] == label]
        values = {}
        for _, r in rows.iterrows():
            numbers = {c: float(v) for c, v in r.items()
                       if c not in (s.label_col, s.key_col) and isinstance(v, Number) and not math.isnan(v)}
            if s.key_col:
                values[r[s.key_col]] = numbers
            else:
                values.update(numbers)
        out[f"{table}: {label}"] = values
    return out


def card_info(name: str) -> dict[str, Any]:
    """The card as a dict, with its presets, the MAC-counting convention and the paper's numbers (labelled "paper")."""
    from pipelines.engine.profiling import CONVENTION

    card = get_card(name)
    info = dataclasses.asdict(card)
    info["presets"] = {pr: model_args(name, pr) for pr in ("smoke", "small", "paper")}
    info["mac_convention"] = CONVENTION
    info["paper"] = paper_numbers(card.paper_rows)
    return info


def main(argv: list[str] | None = None) -> int:
    p = entry.ArgumentParser(prog="interir-bench models", description=__doc__.splitlines()[0])
    p.add_argument("name", nargs="?", help="show this model's card, presets and the paper's numbers")
    a = p.parse_args(argv)
    if a.name is None:
        print("\n".join(list_models()))
        return 0
    from pipelines.common.env import UserError

    try:
        info = card_info(a.name)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    print(json.dumps(info, indent=2, default=list))
    return 0

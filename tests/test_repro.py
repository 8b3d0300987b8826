"""``interir-bench repro``'s job order: longest first, so no long job starts while the other workers idle."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.commands.repro import longest_first
from pipelines.common.dvcrun import chains


def _latency(tmp_path: Path) -> Path:
    f = tmp_path / "latency.json"
    f.write_text(json.dumps({"seconds": {"fast": {"smoke": 0.1}, "slow": {"smoke": 0.9}, "mid": {"smoke": 0.5}}}))
    return f


def test_profile_first_then_slow_models_then_score_inputs_last(tmp_path: Path) -> None:
    todo = chains(["fast", "mid", "slow"], [0, 1])
    order = [t[0] for t in longest_first(todo, "smoke", _latency(tmp_path))]
    assert order == ["profile", "train@slow-0", "train@slow-1", "train@mid-0", "train@mid-1",
                     "train@fast-0", "train@fast-1", "score_inputs"]
    assert sorted(map(tuple, longest_first(todo, "smoke", _latency(tmp_path)))) == sorted(map(tuple, todo))


def test_an_unmeasured_model_counts_as_the_slowest_and_a_missing_file_keeps_the_order(tmp_path: Path) -> None:
    todo = chains(["fast", "new_model"], [0])
    assert [t[0] for t in longest_first(todo, "smoke", _latency(tmp_path))][:2] == ["profile", "train@new_model-0"]
    kept = longest_first(todo, "smoke", tmp_path / "absent.json")
    assert [t[0] for t in kept] == ["profile", "train@fast-0", "train@new_model-0", "score_inputs"]

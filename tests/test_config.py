"""params.yaml -> frozen dataclasses: strict keys, profiles, derived values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from pipelines.common.config import PROFILES, ConfigError, load_params
from pipelines.engine.loop import lr_at
from tests.conftest import REPO


def _write(tmp_path: Path, raw: dict) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.mark.parametrize("profile", PROFILES)
def test_repository_params_load_for_every_profile(profile):
    p = load_params(REPO / "params.yaml", profile)
    assert p.profile == p.preset == profile
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.train.iters = 1  # type: ignore[misc]


def test_profiles_select_different_blocks():
    smoke, paper = load_params(REPO / "params.yaml", "smoke"), load_params(REPO / "params.yaml", "paper")
    assert paper.train.iters > smoke.train.iters
    assert paper.train.batch == 32  # the paper's global batch
    assert smoke.train.beta1 == paper.train.beta1  # common keys are shared


def test_unknown_key_is_named(tmp_path, raw):
    raw["train"]["smoke"]["itres"] = 5
    with pytest.raises(ConfigError, match=r"train\.smoke\.itres"):
        load_params(_write(tmp_path, raw))


def test_unknown_skip_sdir_name_fails_when_params_load(tmp_path, raw):
    """A misspelt evaluate.skip_sdir fails before anything runs, not at the first evaluation after training."""
    raw["evaluate"]["skip_sdir"] = ["rain100h", "sots"]
    with pytest.raises(ConfigError, match="evaluate.skip_sdir: unknown SDIR set 'sots'"):
        load_params(_write(tmp_path, raw))
    raw["evaluate"]["skip_sdir"] = ["rain100h", "sots-indoor"]
    assert load_params(_write(tmp_path, raw)).evaluate.skip_sdir == ("rain100h", "sots-indoor")


def test_unknown_top_level_key_is_named(tmp_path, raw):
    raw["trian"] = {}
    with pytest.raises(ConfigError, match="trian"):
        load_params(_write(tmp_path, raw))


def test_typo_in_inactive_profile_still_fails(tmp_path, raw):
    raw["profile"] = "smoke"
    raw["train"]["paper"]["bacth"] = 3
    with pytest.raises(ConfigError, match="bacth"):
        load_params(_write(tmp_path, raw))


def test_key_written_twice_is_an_error(tmp_path, raw):
    raw["train"]["iters"] = 10  # also under each profile block
    with pytest.raises(ConfigError, match="written twice"):
        load_params(_write(tmp_path, raw))


def test_missing_key_is_named(tmp_path, raw):
    del raw["train"]["smoke"]["patch"]
    with pytest.raises(ConfigError, match=r"train.*patch"):
        load_params(_write(tmp_path, raw))


def test_unknown_profile(tmp_path, raw):
    raw["profile"] = "huge"
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_params(_write(tmp_path, raw))


def test_wrong_type_is_named(tmp_path, raw):
    raw["train"]["smoke"]["iters"] = "many"
    with pytest.raises(ConfigError, match=r"train\.smoke\.iters"):
        load_params(_write(tmp_path, raw))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_schedule_anneals_and_budgets_are_checked(raw, tmp_path):
    cfg = load_params(REPO / "params.yaml", "smoke").train
    lrs = [lr_at(cfg, s) for s in range(cfg.iters + 1)]
    assert lrs[cfg.warmup_iters] == pytest.approx(cfg.lr)
    assert lrs[-1] == pytest.approx(cfg.lr_min)
    cos = lrs[cfg.warmup_iters :]
    assert all(a >= b for a, b in zip(cos, cos[1:]))  # monotone after warm-up
    for block, message in (({"budgets": [10_000]}, "below train.iters"), ({"budgets": [40, 20]}, "increasing"),
                           ({"schedule": "cosine"}, "needs train.schedule: wsd"), ({"schedule": "step"}, "one of")):
        raw["train"]["smoke"].update(block)
        p = tmp_path / "p.yaml"
        p.write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError, match=message):
            load_params(p)
        raw["train"]["smoke"].update(budgets=[40], schedule="wsd")
    assert all(a <= b for a, b in zip(lrs[: cfg.warmup_iters], lrs[1 : cfg.warmup_iters + 1]))

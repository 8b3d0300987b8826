"""Hostile inputs and interrupted runs: one regression test (or more) per failure class of docs/robustness.md.

Every user-facing failure is one line on stderr, ``interir-bench <cmd>: error: ...``, with exit status 2, and
leaves earlier outputs as they were. The fuzz suite (tests/test_fuzz.py) throws random values at the same
entry points.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines import cli
from pipelines.common.config import ConfigError, load_params
from tests.conftest import REPO, make_tiny_mdir, write_params


def one_error_line(capsys: pytest.CaptureFixture, cmd: str, *needles: str) -> str:
    """The one line a failed command printed on stderr (progress bars aside); checks it names ``needles``."""
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "\r" not in ln]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"interir-bench {cmd}: error: "), lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------------- 4. ranges


@pytest.mark.parametrize(("where", "value", "needle"), [
    ("train.smoke.batch", -4, "train.smoke.batch must be in [1, 4096]"),
    ("train.smoke.patch", -64, "train.smoke.patch must be in [8, 4096]"),
    ("train.smoke.ckpt_every", 0, "train.smoke.ckpt_every must be in [1, "),
    ("train.smoke.log_every", 0, "train.smoke.log_every must be in [1, "),
    ("train.smoke.lr", -1, "train.smoke.lr must be in (0, 1]"),
    ("train.smoke.lr", float("nan"), "train.smoke.lr must be in (0, 1]"),
    ("train.smoke.lr", float("inf"), "train.smoke.lr"),
    ("train.beta1", 5, "train.beta1 must be in [0, 1)"),
    ("train.smoke.iters", 0, "train.smoke.iters must be in [1, "),
    ("train.smoke.iters", -3, "train.smoke.iters must be in [1, "),
    ("train.paper.warmup_iters", -1, "train.paper.warmup_iters"),  # an inactive profile is checked too
    ("train.threads", 0, "train.threads must be in [1, 1024]"),
    ("synthesize.seed", -1, "synthesize.seed"),
    ("synthesize.noise_range", [0, 500], "synthesize.noise_range must be in [0, 255] (each)"),
    ("synthesize.haze_range", [0, 150], "synthesize.haze_range must be [lo, hi] with 0 < lo"),
    ("synthesize.rain_range", [300, 50], "synthesize.rain_range"),
    ("evaluate.workers", 0, "evaluate.workers"),
    ("evaluate.batch", -1, "evaluate.batch"),
    ("report.ci", 1.5, "report.ci must be in (0, 1)"),
    ("train.lr_min", 0.5, "train.lr_min (0.5) must not exceed train.lr"),
    ("seeds", [-1], "seeds"),
    ("train.smoke.iters", 10**400, "train.smoke.iters"),
])
def test_out_of_range_params_are_named(tmp_path: Path, where: str, value, needle: str) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    *parents, last = where.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_unreadable_params_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="bin.yaml"):
        load_params(tmp_path / "bin.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_params(tmp_path)  # a folder


def test_iters_zero_writes_no_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_tiny_mdir(tmp_path / "mdir")
    params = write_params(tmp_path / "params.yaml", iters=0)
    rc = cli.main(["train", "nafnet", "--params", str(params), "--data", str(data), "--out", str(tmp_path / "out"),
                   "--ckpt-dir", str(tmp_path / "ck"), "--no-mlflow"])
    assert rc == 2
    one_error_line(capsys, "train", "train.smoke.iters must be in [1, ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["train", "nafnet", "--seed", "-1"], "--seed must be an integer in [0, "),
    (["evaluate", "nafnet", "--seed", "-1"], "--seed must be"),
    (["train", "nafnet", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["degrade", "a.png", "--seed", "-1", "-o", "b.png"], "--seed must be"),
    (["degrade", "a.png", "--noise", "nan", "-o", "b.png"], "noise level nan out of range"),
    (["restore", "--checkpoint", "x.pt", "a.png", "-o", "out", "--tile", "-1"], "--tile and --overlap must be >= 0"),
    (["profile", "nafnet", "--size", "100000"], "--size must be in [8, 4096]"),
    (["synthesize", "--workers", "-2"], "--workers must be >= 0"),
])
def test_bad_numeric_flags_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture, argv: list[str], needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    assert cli.main(argv) == 2
    one_error_line(capsys, argv[0], needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_patch_not_a_multiple_of_the_stride(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_tiny_mdir(tmp_path / "mdir")
    params = write_params(tmp_path / "params.yaml", patch=36)
    rc = cli.main(["train", "interir", "--params", str(params), "--data", str(data), "--out", str(tmp_path / "out"),
                   "--ckpt-dir", str(tmp_path / "ck"), "--no-mlflow"])
    assert rc == 2
    one_error_line(capsys, "train", "train.smoke.patch: 36 is not a multiple of interir's stride 8")

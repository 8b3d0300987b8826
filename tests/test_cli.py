"""The console script: help lists every subcommand, errors are one line with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines import cli
from pipelines.commands.ui import command as ui_command

EXPECTED = ("models", "synthesize", "degrade", "train", "evaluate", "profile", "report", "restore", "ui")


def test_help_lists_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED:
        assert f"    {name}" in out


def test_console_script_is_installed():
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "restore" in res.stdout


def test_models_prints_one_name_per_line(capsys):
    from interir.registry import list_models

    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == list_models()
    assert {"interir", "deepsn_net", "fdtanet"} <= set(lines)


def test_model_card(capsys):
    assert cli.main(["models", "nafnet"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert "presets" in card and card["paper_rows"] == [] and card["paper"] == {}  # not in the paper


def test_model_card_quotes_the_paper_from_the_reference_tables(capsys):
    from pipelines.engine.profiling import CONVENTION

    assert cli.main(["models", "deepsn_xconv"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["paper"] == {"table4: baseline + explainable conv": {"psnr": 29.83, "gain_db": 0.72},
                             "table5: DeepSN-Net + explainable conv": {"psnr": 29.83, "gain_db": 0.72}}
    assert card["mac_convention"] == CONVENTION


def test_unknown_model_card_is_one_line_error(capsys):
    assert cli.main(["models", "no_such_model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_model" in err[0]


def test_unknown_command_exits_nonzero():
    with pytest.raises(SystemExit) as exc:
        cli.main(["fly"])
    assert exc.value.code != 0


def test_bad_params_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: huge\n")
    assert cli.main(["train", "nafnet", "--params", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "params" in err[0]


def test_missing_manifest_is_one_line_error(tmp_path, capsys):
    from tests.conftest import REPO

    rc = cli.main(["train", "nafnet", "--params", str(REPO / "params.yaml"), "--data", str(tmp_path / "none"),
                   "--no-mlflow", "--ckpt-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "manifest not found" in err and not (tmp_path / "o").exists()


def test_ui_binds_loopback_with_one_worker(capsys):
    cmd = ui_command("127.0.0.1", 5000, "sqlite:///mlflow.db")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--workers") + 1] == "1"
    with pytest.raises(SystemExit):
        cli.main(["ui", "--help"])
    assert "default 127.0.0.1" in capsys.readouterr().out

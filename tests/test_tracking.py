"""MLflow conventions, and a team's shared tracking server: a real ``mlflow server`` over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import cli
from pipelines.common import tracking
from tests.conftest import running_mlflow_server, write_params
from tests.test_evaluate import save_checkpoint


def test_tags_line_up_with_the_paper_tables() -> None:
    tags = tracking.run_tags("deepsn_xconv", "small", 2, "abc123")
    assert tags["role"] == "reproduced" and tags["seed"] == "2" and tags["data.version"] == "abc123"
    assert tags["paper.table"] == "table4,table5"  # from the model card's paper_rows
    assert tags["paper.row"] == "table4:baseline + explainable conv; table5:DeepSN-Net + explainable conv"
    assert tracking.paper_tags("nafnet") == {"paper.table": "", "paper.row": ""}  # not in the paper
    assert tracking.run_name("deepsn_xconv", "small", 2) == "deepsn_xconv/small/s2"
    assert tracking.experiment_name("small") == "interir-bench/small"


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and one worker; stopped with SIGTERM."""
    with running_mlflow_server(tmp_path) as url:
        yield url


@pytest.mark.integration
@pytest.mark.slow  # ~40 s here: the server alone takes 15-25 s to answer /health on 2 shared cores
def test_train_and_evaluate_log_one_run_through_a_tracking_server(mlflow_server: str, tiny_mdir: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("INTERIR_DATA", raising=False)
    work = tmp_path / "client"
    work.mkdir()
    monkeypatch.chdir(work)
    params = write_params(tmp_path / "params.yaml", iters=4, batch=2, patch=32, ckpt_every=2, log_every=2,
                          warmup_iters=1)
    assert cli.main(["train", "nafnet", "--params", str(params), "--data", str(tiny_mdir),
                     "--out", str(work / "train"), "--ckpt-dir", str(work / "ck")]) == 0
    assert cli.main(["evaluate", "nafnet", "--params", str(params), "--data", str(tiny_mdir),
                     "--train-dir", str(work / "train"), "--out", str(work / "eval")]) == 0
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    runs = mlflow.search_runs(experiment_names=["interir-bench/smoke"], output_format="list")
    assert len(runs) == 1, [r.info.run_name for r in runs]  # train and evaluate share the run
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "nafnet/smoke/s0"
    assert run.data.tags["model"] == "nafnet" and run.data.tags["role"] == "reproduced"
    assert {"train/loss", "MDIR/psnr", "MDIR/ssim_y", "MDIR/noise/psnr"} <= set(run.data.metrics)
    client = mlflow.MlflowClient()
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/model.pt"]
    assert not list(work.glob("mlruns")) and not list(work.glob("*.db"))  # nothing went to the local store
    # A second evaluation of a checkpoint whose training run is unknown here starts a run of its own.
    other = save_checkpoint(tmp_path / "other.pt")
    assert cli.main(["evaluate", "nafnet", "--seed", "3", "--params", str(params), "--data", str(tiny_mdir),
                     "--checkpoint", str(other), "--out", str(work / "eval")]) == 0
    names = sorted(r.info.run_name for r in mlflow.search_runs(experiment_names=["interir-bench/smoke"],
                                                               output_format="list"))
    assert names == ["nafnet/smoke/s0", "nafnet/smoke/s3"]


def test_ui_command_binds_localhost_with_one_worker() -> None:
    from pipelines.commands.ui import command

    cmd = command("127.0.0.1", 5000, "sqlite:///mlflow.db")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--workers") + 1] == "1"

"""Data parallelism under torchrun, on the CPU with 2 gloo processes: equal to 1 process, and resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines import cli
from pipelines.engine import checkpoint as ckpt_io
from tests.conftest import REPO, make_tiny_mdir, write_params

pytestmark = pytest.mark.integration

LOOP = dict(iters=6, batch=4, patch=32, ckpt_every=2, log_every=2, warmup_iters=2)


def _train_args(root: Path, params: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "nafnet", "--params", str(params), "--data", str(data), "--out", str(root / "out"),
            "--ckpt-dir", str(root / "ck"), "--no-mlflow", *extra]


def torchrun(root: Path, params: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pipelines.cli", *_train_args(root, params, data, *extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _weights(root: Path) -> dict[str, torch.Tensor]:
    return ckpt_io.load(root / "out" / "nafnet-s0" / "model.pt")["model_state"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    data = make_tiny_mdir(root / "mdir")
    params = write_params(root / "params.yaml", **LOOP)
    res = torchrun(root / "two", params, data)
    return {"root": root / "two", "data": data, "params": params, "stderr": res.stderr, "stdout": res.stdout}


def test_two_processes_equal_one_with_the_same_global_batch(ddp_run: dict, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cli.main(_train_args(tmp_path, ddp_run["params"], ddp_run["data"])) == 0
    one, two = _weights(tmp_path), _weights(ddp_run["root"])
    assert one.keys() == two.keys()
    worst = max((one[k].float() - two[k].float()).abs().max().item() for k in one)
    assert worst < 1e-5, worst
    from interir.registry import create_model

    torch.manual_seed(0)
    init = create_model("nafnet", "smoke").state_dict()
    assert max((one[k].float() - init[k].float()).abs().max().item() for k in one) > 1e-3  # it did train
    s1 = json.loads((tmp_path / "out" / "nafnet-s0" / "train.json").read_text())
    s2 = json.loads((ddp_run["root"] / "out" / "nafnet-s0" / "train.json").read_text())
    assert ckpt_io.load(ddp_run["root"] / "out" / "nafnet-s0" / "model.pt")["world_size"] == 2
    assert s2["steps"] == s1["steps"] == LOOP["iters"]
    assert s2["final_loss"] == pytest.approx(s1["final_loss"], rel=1e-5)  # logged loss is the global mean


def test_the_stage_command_relaunches_itself_under_torchrun(ddp_run: dict, tmp_path: Path) -> None:
    """``INTERIR_NPROC_PER_NODE=2`` + the stage's own command (what dvc.yaml runs, what a 2-GPU cluster job
    runs): the same 2-process run as an explicit torchrun."""
    args = _train_args(tmp_path, ddp_run["params"], ddp_run["data"])[1:]
    cmd = [sys.executable, "-m", "pipelines.stages.train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "INTERIR_NPROC_PER_NODE": "2"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "INTERIR_NPROC_PER_NODE=2: -m torch.distributed.run --standalone --nproc_per_node 2" in res.stderr
    assert ckpt_io.load(tmp_path / "out" / "nafnet-s0" / "model.pt")["world_size"] == 2
    one, two = _weights(tmp_path), _weights(ddp_run["root"])
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_nproc_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.common.env import UserError
    from pipelines.engine import distributed

    for key in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", distributed.NPROC_ENV):
        monkeypatch.delenv(key, raising=False)
    assert distributed.torchrun_nproc() == 1
    assert distributed.relaunch_under_torchrun("pipelines.stages.train", ["nafnet"]) is None
    monkeypatch.setenv(distributed.NPROC_ENV, "4")
    assert distributed.torchrun_nproc() == 4
    assert distributed.torchrun_command("m", ["a", "--seed", "1"], 4)[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4", "-m", "m", "a", "--seed", "1"]
    monkeypatch.setenv("LOCAL_RANK", "0")  # inside torchrun: never again
    assert distributed.torchrun_nproc() == 1
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv(distributed.NPROC_ENV, "two")
    with pytest.raises(UserError, match="INTERIR_NPROC_PER_NODE"):
        distributed.torchrun_nproc()


def test_rank_zero_alone_reports(ddp_run: dict) -> None:
    assert ddp_run["stdout"].count("trained nafnet") == 1
    ck = ckpt_io.load(ddp_run["root"] / "ck" / "nafnet-s0" / "last.pt")
    assert ck["world_size"] == 2 and ck["step"] == LOOP["iters"]


@pytest.mark.slow
def test_resume_under_ddp_is_bit_identical(ddp_run: dict, tmp_path: Path) -> None:
    torchrun(tmp_path, ddp_run["params"], ddp_run["data"], "--stop-after", "3")
    assert ckpt_io.load(tmp_path / "ck" / "nafnet-s0" / "last.pt")["step"] == 2
    assert not (tmp_path / "out" / "nafnet-s0" / "model.pt").exists()
    res = torchrun(tmp_path, ddp_run["params"], ddp_run["data"])
    assert "resuming nafnet from step 2" in res.stderr
    one, two = _weights(tmp_path), _weights(ddp_run["root"])
    assert all(torch.equal(one[k], two[k]) for k in one)

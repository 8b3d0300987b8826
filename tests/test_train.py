"""The training engine: schedule, sampling, resume (stop and SIGKILL), NaN handling, MLflow run."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipelines import cli
from pipelines.common.config import load_params
from pipelines.data.manifest import read_manifest
from pipelines.data.sampler import PatchSampler
from pipelines.engine import checkpoint as ckpt_io
from pipelines.engine.loop import lr_at
from tests.conftest import REPO, make_tiny_mdir, write_params

# Small enough for seconds on one thread, long enough that a SIGKILL lands mid-run.
LOOP = dict(iters=24, batch=2, patch=32, ckpt_every=2, log_every=4, warmup_iters=2, budgets=[12])


def _args(root: Path, params: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "nafnet", "--params", str(params), "--data", str(data), "--out", str(root / "out"),
            "--ckpt-dir", str(root / "ck"), *extra]


def _weights(root: Path) -> dict[str, torch.Tensor]:
    return ckpt_io.load(root / "out" / "nafnet-s0" / "model.pt")["model_state"]


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"tensors differ: {diff[:5]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One uninterrupted, MLflow-tracked run shared by the resume tests."""
    root = tmp_path_factory.mktemp("ref")
    data = make_tiny_mdir(root / "mdir")
    params = write_params(root / "params.yaml", **LOOP)
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)  # MLflow artifacts go to ./mlruns
    try:
        assert cli.main(_args(root, params, data)) == 0
    finally:
        mp.undo()
    return {"root": root, "data": data, "params": params}


def test_wsd_budgets_equal_separate_runs(reference: dict[str, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The 12-step budget branched off the 24-step run is bit for bit the model of a separate 12-step run:
    the claims can be followed over budget at the cost of one run plus the shorter budgets' decays."""
    snap = reference["root"] / "out" / "nafnet-s0" / "snapshots" / "model_12.pt"
    assert ckpt_io.load(snap)["step"] == 12
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    short = write_params(tmp_path / "short.yaml", **{**LOOP, "iters": 12, "budgets": []})
    assert cli.main(_args(tmp_path, short, reference["data"], "--no-mlflow")) == 0
    _assert_identical(_weights(tmp_path), ckpt_io.load(snap)["model_state"])


def test_schedules() -> None:
    """wsd: constant until the last decay_fraction of each budget, so budgets share their steps up to there."""
    import dataclasses

    cfg = dataclasses.replace(load_params(REPO / "params.yaml", "smoke").train, iters=100, warmup_iters=10,
                              lr=1e-3, lr_min=1e-6, schedule="wsd", decay_fraction=0.2, budgets=())
    assert lr_at(cfg, 0) == pytest.approx(1e-4) and lr_at(cfg, 50) == lr_at(cfg, 79) == cfg.lr
    assert lr_at(cfg, 99) == pytest.approx(cfg.lr_min) and lr_at(cfg, 90) < cfg.lr
    assert [lr_at(cfg, s, 50) for s in range(40)] == [lr_at(cfg, s) for s in range(40)]  # shared up to 50's decay
    assert lr_at(cfg, 49, 50) == pytest.approx(cfg.lr_min)
    lin = dataclasses.replace(cfg, schedule="linear")
    assert lr_at(lin, 10) == pytest.approx(cfg.lr) and lr_at(lin, 55) == pytest.approx((cfg.lr + cfg.lr_min) / 2)


def test_lr_schedule_warmup_then_cosine_to_lr_min() -> None:
    import dataclasses

    cfg = dataclasses.replace(load_params(REPO / "params.yaml", "smoke").train, schedule="cosine", budgets=())
    lrs = [lr_at(cfg, s) for s in range(cfg.iters)]
    assert lrs[0] == pytest.approx(cfg.lr / cfg.warmup_iters)
    assert lrs[cfg.warmup_iters] == pytest.approx(cfg.lr)
    assert lr_at(cfg, cfg.iters) == pytest.approx(cfg.lr_min)
    assert all(a >= b for a, b in zip(lrs[cfg.warmup_iters :], lrs[cfg.warmup_iters + 1 :]))
    mid = cfg.warmup_iters + (cfg.iters - cfg.warmup_iters) // 2
    assert lr_at(cfg, mid) == pytest.approx(cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min), rel=0.05)


def test_patches_are_a_pure_function_of_seed_and_step(tiny_mdir: Path) -> None:
    pairs = read_manifest(tiny_mdir, "train")
    a = PatchSampler(pairs, 16, seed=3)
    b = PatchSampler(pairs, 16, seed=3, cache=0)
    x1, y1 = a.batch(7, 4)
    x2, y2 = b.batch(7, 4)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and x1.shape == (4, 3, 16, 16)
    assert not torch.equal(a.batch(8, 4)[0], x1)
    assert not torch.equal(PatchSampler(pairs, 16, seed=4).batch(7, 4)[0], x1)
    # Under torchrun each rank takes its contiguous slice of the same global batch.
    halves = [a.batch(7, 4, rank=r, world=2)[0] for r in range(2)]
    assert torch.equal(torch.cat(halves), x1)


def test_flips_happen_both_ways(tiny_mdir: Path) -> None:
    """Over many steps, patches equal to a flipped crop of the source show up (h and v)."""
    pairs = read_manifest(tiny_mdir, "train")
    s = PatchSampler(pairs, 48, seed=0)  # patch == image size: the only freedom is the flips
    from pipelines.data.manifest import load_pair

    imgs = [torch.from_numpy(load_pair(p)[1]).permute(2, 0, 1).float() / 255 for p in pairs]
    seen = set()
    for step in range(40):
        y = s.batch(step, 1)[1][0]
        for img in imgs:
            for name, t in (("id", img), ("h", img.flip(-1)), ("v", img.flip(-2)), ("hv", img.flip(-1, -2))):
                if torch.equal(y, t):
                    seen.add(name)
    assert seen == {"id", "h", "v", "hv"}


def test_checkpoint_is_self_describing_and_loads_weights_only(reference: dict[str, Path]) -> None:
    last = reference["root"] / "ck" / "nafnet-s0" / "last.pt"
    raw = torch.load(last, map_location="cpu", weights_only=True)  # raises on any pickled object
    for key in ("model", "model_args", "config", "step", "model_state", "optimizer_state", "scheduler", "rng",
                "data_version", "seed"):
        assert key in raw, key
    assert raw["model"] == "nafnet" and raw["step"] == LOOP["iters"]
    assert raw["config"]["train"]["batch"] == LOOP["batch"]
    model = ckpt_io.build_model(raw, last)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_mlflow_run_named_tagged_with_artifacts(reference: dict[str, Path]) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{reference['root'] / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["interir-bench/smoke"], filter_string="tags.seed = '0'",
                              output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "nafnet/smoke/s0"
    tags = run.data.tags
    assert tags["role"] == "reproduced" and tags["model"] == "nafnet" and tags["seed"] == "0"
    assert tags["profile"] == "smoke" and len(tags["data.version"]) == 12 and "paper.table" in tags
    assert run.data.params["batch_global"] == str(LOOP["batch"])
    assert len(run.data.params) <= 20
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(LOOP["log_every"], LOOP["iters"] + 1, LOOP["log_every"]))
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "config")}
    arts |= {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "checkpoint")}
    assert {"config/params_resolved.json", "checkpoint/model.pt"} <= arts
    # The MLflow conventions: a source commit, the run key evaluate finds it by, the model with a signature,
    # the dataset version as an input, artifacts under the project (never a temporary workspace).
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["mlflow.source.name"] == "pipelines.stages.train"
    assert len(tags["run.key"]) == 16 and len(tags["params.hash"]) == 12
    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert logged and logged[0].source_run_id == run.info.run_id
    info = mlflow.models.get_model_info(f"models:/{logged[0].model_id}")
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 3, -1, -1)
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == [tags["data.version"]]
    assert run.info.artifact_uri.startswith((reference["root"] / "mlruns").as_uri())


def test_stop_and_resume_is_bit_identical(reference: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # log_every is not part of the resume key: changing it between runs still resumes.
    first = write_params(tmp_path / "p1.yaml", **{**LOOP, "log_every": 3})
    assert cli.main(_args(tmp_path, first, reference["data"], "--no-mlflow", "--stop-after", "23")) == 0
    assert not (tmp_path / "out" / "nafnet-s0" / "model.pt").exists()
    assert ckpt_io.load(tmp_path / "ck" / "nafnet-s0" / "last.pt")["step"] == 22  # last checkpoint before 23
    assert cli.main(_args(tmp_path, reference["params"], reference["data"], "--no-mlflow")) == 0
    _assert_identical(_weights(tmp_path), _weights(reference["root"]))
    # The outputs DVC hashes are the same bytes: the final checkpoint holds nothing of the run's history
    # (no run id, no resume point), and the loss window (steps 21-24) spans the restart exactly.
    for name in ("model.pt", "train.json"):
        assert (tmp_path / "out" / "nafnet-s0" / name).read_bytes() == \
            (reference["root"] / "out" / "nafnet-s0" / name).read_bytes(), name


def test_evaluate_logs_into_the_training_run(reference: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = reference["root"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.delenv("INTERIR_DATA", raising=False)
    monkeypatch.chdir(root)
    assert cli.main(["evaluate", "nafnet", "--params", str(reference["params"]), "--data", str(reference["data"]),
                     "--train-dir", str(root / "out"), "--out", str(tmp_path / "eval")]) == 0
    import mlflow

    runs = mlflow.search_runs(experiment_names=["interir-bench/smoke"], filter_string="tags.seed = '0'",
                              output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert {"train/loss", "MDIR/psnr", "MDIR/ssim", "MDIR/psnr_y", "MDIR/ssim_y"} <= set(runs[0].data.metrics)
    assert runs[0].data.tags["eval.metrics_backend"] == "fast"


def test_sigkill_then_restart_is_bit_identical(reference: dict[str, Path], tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "pipelines.cli", *_args(tmp_path, reference["params"], reference["data"],
                                                        "--no-mlflow")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    last = tmp_path / "ck" / "nafnet-s0" / "last.pt"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "out" / "nafnet-s0" / "model.pt").exists()
    killed_at = ckpt_io.load(last)["step"]
    assert 0 < killed_at < LOOP["iters"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming nafnet from step" in res.stderr
    _assert_identical(_weights(tmp_path), _weights(reference["root"]))


def test_nan_loss_stops_run_keeps_checkpoint_and_fails_mlflow_run(reference: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from interir.losses import L1FFTLoss

    calls = {"n": 0}
    real = L1FFTLoss.forward

    def poisoned(self, pred, target):  # finite for 5 steps, then NaN
        calls["n"] += 1
        out = real(self, pred, target)
        return out * math.nan if calls["n"] > 5 else out

    monkeypatch.setattr(L1FFTLoss, "forward", poisoned)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = reference["root"]  # share its tracking DB (creating one costs seconds); seed 1 is a run of its own
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.chdir(root)
    params = write_params(tmp_path / "params.yaml", **{**LOOP, "iters": 10, "budgets": []})
    rc = cli.main(_args(tmp_path, params, reference["data"], "--seed", "1"))
    err = capsys.readouterr().err
    assert rc == 2
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(line) == 1 and "non-finite loss (nan) at step 6" in line[0] and "last.pt (step 4)" in line[0]
    assert ckpt_io.load(tmp_path / "ck" / "nafnet-s1" / "last.pt")["step"] == 4
    assert not (tmp_path / "out" / "nafnet-s1" / "model.pt").exists()
    import mlflow

    runs = mlflow.search_runs(experiment_names=["interir-bench/smoke"], filter_string="tags.seed = '1'",
                              output_format="list")
    assert [(r.info.run_name, r.info.status) for r in runs] == [("nafnet/smoke/s1", "FAILED")]


def test_resume_refuses_checkpoint_of_another_model(tiny_mdir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    last = tmp_path / "ck" / "nafnet-s0" / "last.pt"
    ckpt_io.save(last, {"model": "interir", "model_args": {}, "step": 2, "model_state": {}})
    before = last.read_bytes()
    params = write_params(tmp_path / "params.yaml", **LOOP)
    assert cli.main(_args(tmp_path, params, tiny_mdir, "--no-mlflow")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(last) in err[0] and "'interir'" in err[0]
    assert last.read_bytes() == before


def test_tampered_resume_checkpoint_is_a_one_line_error(tiny_mdir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    last = tmp_path / "ck" / "nafnet-s0" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 not really a zip")
    params = write_params(tmp_path / "params.yaml", **LOOP)
    assert cli.main(_args(tmp_path, params, tiny_mdir, "--no-mlflow")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(last) in err[0] and "unreadable or unsafe" in err[0]


def test_batch_not_divisible_by_processes_is_refused(tiny_mdir: Path, tmp_path: Path) -> None:
    from pipelines.common.env import UserError
    from pipelines.engine.distributed import DistInfo
    from pipelines.engine.loop import setup

    params = load_params(write_params(tmp_path / "params.yaml", **{**LOOP, "batch": 3}))
    with pytest.raises(UserError, match="global"):
        setup("nafnet", params, 0, tiny_mdir, tmp_path / "ck", tmp_path / "out", DistInfo(rank=0, world=2))


def test_worker_prefetch_gives_the_same_batches(tiny_mdir: Path) -> None:
    from types import SimpleNamespace

    from pipelines.common.config import TrainConfig
    from pipelines.engine.distributed import DistInfo
    from pipelines.engine.loop import batches

    cfg = load_params(REPO / "params.yaml", "smoke").train
    pairs = read_manifest(tiny_mdir, "train")
    s = PatchSampler(pairs, 16, seed=1)

    def run(workers: int) -> SimpleNamespace:
        return SimpleNamespace(cfg=TrainConfig(**{**cfg.__dict__, "iters": 5, "batch": 2, "num_workers": workers,
                                                  "budgets": ()}),
                               dist=DistInfo(), sampler=s, device=torch.device("cpu"))

    inline = list(batches(run(0), 2))
    workers = list(batches(run(1), 2))
    assert len(inline) == len(workers) == 3
    for (a, b), (c, d) in zip(inline, workers):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert np.isfinite(inline[0][0].numpy()).all()


def test_original_recipes_come_from_the_cards(tiny_mdir: Path, tmp_path: Path) -> None:
    """train.recipe: original gives each baseline its published recipe (DeepSN-Net's AdamW, linear decay,
    Charbonnier+FFT loss, clip 0.01), the paper profile's budget from the card only at the paper profile, and
    the shared recipe to a model whose recipe is unpublished (FDTANet); a run trains with it."""
    import dataclasses

    from interir.registry import get_card
    from pipelines.engine.loop import effective_train

    shared = load_params(REPO / "params.yaml", "smoke").train
    original = dataclasses.replace(shared, recipe="original", budgets=())
    deepsn = effective_train(original, "deepsn_xconv", "smoke")
    r = get_card("deepsn_net").recipe
    assert (deepsn.optimizer, deepsn.lr, deepsn.weight_decay, deepsn.schedule, deepsn.loss, deepsn.grad_clip) == \
        ("adamw", r.lr, r.weight_decay, "linear", "charbonnier_fft", 0.01)
    assert (deepsn.batch, deepsn.iters) == (shared.batch, shared.iters)  # equal budgets on the CPU profiles
    paper = effective_train(dataclasses.replace(load_params(REPO / "params.yaml", "paper").train,
                                                recipe="original"), "deepsn_net", "paper")
    assert (paper.batch, paper.patch, paper.iters) == (r.batch, r.patch, r.iters)
    assert effective_train(original, "fdtanet", "smoke") == original and get_card("fdtanet").recipe_note
    assert effective_train(shared, "deepsn_net", "smoke") == shared
    params = write_params(tmp_path / "params.yaml", **{**LOOP, "iters": 3, "budgets": []})
    raw = yaml.safe_load(params.read_text())
    raw["train"]["recipe"] = "original"  # a common key (every profile)
    params.write_text(yaml.safe_dump(raw))
    assert cli.main(["train", "deepsn_net", "--params", str(params), "--data", str(tiny_mdir), "--out",
                     str(tmp_path / "out"), "--ckpt-dir", str(tmp_path / "ck"), "--no-mlflow"]) == 0
    ck = ckpt_io.load(tmp_path / "out" / "deepsn_net-s0" / "model.pt")
    assert ck["config"]["train"]["optimizer"] == "adamw" and ck["scheduler"]["kind"] == "linear"

"""The evaluate stage: per-image CSV and metrics JSON, and every kind of bad input as a one-line error."""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import cli
from pipelines.data.imageio import read_image, write_image
from pipelines.data.manifest import read_manifest
from pipelines.engine import checkpoint as ckpt_io
from pipelines.engine.inference import restore_tensor
from tests.conftest import REPO, rehash_manifest


def save_checkpoint(path: Path, model_name: str = "nafnet", seed: int = 0) -> Path:
    """A model.pt as the train stage writes it, without the training (random weights)."""
    from interir.registry import create_model, model_args

    torch.manual_seed(seed)
    model = create_model(model_name, "smoke")
    ckpt_io.save(path, {"model": model_name, "model_args": model_args(model_name, "smoke"), "preset": "smoke",
                        "step": 5, "seed": seed, "data_version": "x", "model_state": model.state_dict()})
    return path


@pytest.fixture
def setup(tiny_mdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.delenv("INTERIR_DATA", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return {"data": tiny_mdir, "ckpt": save_checkpoint(tmp_path / "model.pt"), "out": tmp_path / "eval"}


def _run(s: dict[str, Path], *extra: str, model: str = "nafnet") -> int:
    return cli.main(["evaluate", model, "--params", str(REPO / "params.yaml"), "--profile", "smoke",
                     "--data", str(s["data"]), "--checkpoint", str(s["ckpt"]), "--out", str(s["out"]),
                     "--no-mlflow", *extra])


def _one_error_line(capsys: pytest.CaptureFixture, *needles: str) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("interir-bench evaluate: error: ")]
    assert len(errs) == 1, lines
    for n in needles:
        assert n in errs[0], errs[0]
    return errs[0]


def test_per_image_csv_and_metrics_json(setup: dict[str, Path]) -> None:
    assert _run(setup) == 0
    out = setup["out"] / "nafnet-s0"
    with (out / "per_image.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    pairs = read_manifest(setup["data"], "test")
    assert len(rows) == len(pairs)
    assert list(rows[0]) == ["image", "set", "combination", "unit", "haze", "rain", "noise", "psnr", "ssim",
                             "psnr_y", "ssim_y"]
    assert [r["unit"] for r in rows] == [p.unit for p in pairs] and all(rows[0]["unit"])
    # DVC metrics: numbers only (no names, timings or run ids), so they are the same bytes on every run.
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"MDIR"} and set(metrics["MDIR"]) == {"n", "psnr", "ssim", "psnr_y", "ssim_y"}
    mdir = metrics["MDIR"]
    assert mdir["n"] == len(pairs)
    for k in ("psnr", "ssim", "psnr_y", "ssim_y"):
        assert mdir[k] == pytest.approx(np.mean([float(r[k]) for r in rows]), abs=1e-5)
    by_comb = list(csv.DictReader((out / "by_combination.csv").open()))
    assert [r["combination"] for r in by_comb] == ["noise"]
    assert float(by_comb[0]["psnr"]) == pytest.approx(mdir["psnr"], abs=1e-5)
    before = {f: (out / f).read_bytes() for f in ("per_image.csv", "metrics.json", "by_combination.csv")}
    assert _run(setup) == 0
    assert {f: (out / f).read_bytes() for f in before} == before  # byte-stable
    # Recompute image 0 from scratch: pad/forward/crop/clamp, quantise, closed-form PSNR.
    model = ckpt_io.build_model(ckpt_io.load(setup["ckpt"])).eval()
    x = torch.from_numpy(read_image(pairs[0].input)).permute(2, 0, 1)[None]
    y = np.rint(read_image(pairs[0].target) * 255)
    pred = np.rint(restore_tensor(model, x)[0].permute(1, 2, 0).numpy() * 255)
    mse = np.mean((pred / 255 - y / 255) ** 2)
    assert float(rows[0]["psnr"]) == pytest.approx(10 * math.log10(1 / (mse + 1e-8)), abs=1e-4)
    # One saved restoration per degradation combination (the fixture has only "noise").
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["MDIR_000.png"]


@pytest.mark.parametrize("model_name", ["interir", "deepsn_net", "nafnet"])
def test_batched_threaded_evaluation_equals_one_by_one(tmp_path: Path, model_name: str) -> None:
    """Chunks of 3 pairs (sizes mixed, so some chunks hold two sizes) restored and scored by two worker
    threads give the rows of the plain one-image loop: same order, metrics to 1e-3 (a batched forward pass may
    differ from a single one in the last float bit, which can flip a pixel's 8-bit level: a few 1e-4 dB on these
    small images); and exactly the rows of one worker with the same chunks (the chunks, not the threads, decide
    the numbers)."""
    from interir.registry import create_model, get_card
    from pipelines.engine.evaluation import evaluate_pairs
    from tests.conftest import make_tiny_mdir

    pairs = (read_manifest(make_tiny_mdir(tmp_path / "a", n_train=1, n_test=5, size=40), "test")
             + read_manifest(make_tiny_mdir(tmp_path / "b", n_train=1, n_test=2, size=33, seed=1), "test")
             + read_manifest(make_tiny_mdir(tmp_path / "c", n_train=1, n_test=3, size=40, seed=2), "test"))
    torch.manual_seed(0)
    model = create_model(model_name, "smoke").eval()
    stride = get_card(model_name).stride
    s1: dict = {}
    s3: dict = {}
    s3_one: dict = {}
    one = evaluate_pairs(model, pairs, "MDIR", stride, keep=4, samples=s1, batch=1, workers=1)
    many = evaluate_pairs(model, pairs, "MDIR", stride, keep=4, samples=s3, batch=3, workers=2)
    same_chunks = evaluate_pairs(model, pairs, "MDIR", stride, keep=4, samples=s3_one, batch=3, workers=1)
    assert [r["image"] for r in many] == [r["image"] for r in one] == [p.name for p in pairs]
    for a, b in zip(one, many):
        for k in ("psnr", "ssim", "psnr_y", "ssim_y"):
            assert b[k] == pytest.approx(a[k], abs=1e-3), (a["image"], k)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "runtime_s"} for r in rows]  # noqa: E731
    assert strip(many) == strip(same_chunks)
    assert s1.keys() == s3.keys() == s3_one.keys()
    for k in s1:
        assert np.abs(s1[k].astype(int) - s3[k].astype(int)).max() <= 1
        assert np.array_equal(s3[k], s3_one[k])


def test_error_in_a_worker_reaches_the_caller(tmp_path: Path) -> None:
    """A failure inside a worker thread is raised by evaluate_pairs, not lost."""
    from pipelines.engine.evaluation import evaluate_pairs
    from tests.conftest import make_tiny_mdir

    class Broken:
        def __call__(self, restored, target):
            raise RuntimeError("scorer broke")

    pairs = read_manifest(make_tiny_mdir(tmp_path / "a", n_train=1, n_test=5, size=32), "test")
    with pytest.raises(RuntimeError, match="scorer broke"):
        evaluate_pairs(torch.nn.Conv2d(3, 3, 1), pairs, "MDIR", 1, scorer=Broken(), batch=2, workers=2)


def test_an_error_drops_the_queued_chunks(tmp_path: Path) -> None:
    """After a chunk fails, the queued chunks that no worker has started are dropped. The first chunk
    fails at once (corrupt file); every scoring call holds its worker for 1 s, so the two workers are
    busy with chunks 1 and 2 when the error arrives: at most 2 chunks are scored, not the 4 queued."""
    import threading

    from pipelines.common.env import UserError
    from pipelines.engine.evaluation import evaluate_pairs
    from tests.conftest import make_tiny_mdir

    calls = []
    hold = threading.Event()

    class Slow:
        def __call__(self, restored, target):
            calls.append(1)
            hold.wait(1.0)
            return {k: torch.zeros(1) for k in ("psnr", "ssim", "psnr_y", "ssim_y")}

    pairs = read_manifest(make_tiny_mdir(tmp_path / "a", n_train=1, n_test=12, size=32), "test")
    pairs[0].input.write_bytes(b"not a png")
    with pytest.raises(UserError, match="test/0.png"):
        evaluate_pairs(torch.nn.Conv2d(3, 3, 1), pairs, "MDIR", 1, scorer=Slow(), batch=1, workers=2)
    assert 1 <= len(calls) <= 2


def _libgomp():
    import ctypes
    import glob

    found = glob.glob(str(Path(torch.__file__).parent / "lib" / "libgomp*"))
    return ctypes.CDLL(found[0]) if found else None


@pytest.mark.skipif(_libgomp() is None or (os.cpu_count() or 1) < 2, reason="needs torch's libgomp and 2+ cores")
def test_workers_run_the_configured_intra_op_threads(tmp_path: Path) -> None:
    """OpenMP's thread count is per thread: each worker starts at the caller's torch thread count, not
    at OpenMP's default of all cores (oneDNN convolutions read it without ATen setting it first)."""
    from pipelines.engine.evaluation import evaluate_pairs
    from tests.conftest import make_tiny_mdir

    gomp = _libgomp()
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            seen.append(gomp.omp_get_max_threads())
            return self.conv(x)

    pairs = read_manifest(make_tiny_mdir(tmp_path / "a", n_train=1, n_test=4, size=32), "test")
    threads = torch.get_num_threads()
    evaluate_pairs(Probe(), pairs, "MDIR", 1, batch=1, workers=2)
    assert seen and set(seen) == {threads}


def test_eval_batch_choice():
    """evaluate.batch > 0 wins; 0 takes the card's measured choice; batch-dependent models always get 1."""
    import dataclasses

    from interir.registry import get_card
    from pipelines.engine.evaluation import eval_batch

    assert eval_batch(get_card("interir"), 0) == 8
    assert eval_batch(get_card("fdtanet"), 0) == 1 and eval_batch(get_card("nafnet"), 0) == 1
    assert eval_batch(get_card("fdtanet"), 4) == 4
    assert eval_batch(dataclasses.replace(get_card("interir"), batch_independent=False), 8) == 1


def test_workers_report_the_first_corrupt_image_in_turn(tmp_path: Path) -> None:
    """Bad files read by the worker threads raise the one-line error of the first one in the order of
    the pairs, naming the file, whichever thread failed first."""
    from pipelines.common.env import UserError
    from pipelines.engine.evaluation import evaluate_pairs
    from tests.conftest import make_tiny_mdir

    pairs = read_manifest(make_tiny_mdir(tmp_path / "a", n_train=1, n_test=6, size=32), "test")
    pairs[2].input.write_bytes(b"not a png")
    pairs[4].target.write_bytes(b"not a png either")
    model = torch.nn.Conv2d(3, 3, 1)
    for _ in range(3):
        with pytest.raises(UserError, match=f"{pairs[2].input.parent.name}/{pairs[2].input.name}"):
            evaluate_pairs(model, pairs, "MDIR", 1, batch=2, workers=2)


def test_sample_indices_cover_every_combination():
    from pipelines.data.manifest import COMBINATIONS, Pair
    from pipelines.engine.evaluation import sample_indices

    pairs = [Pair(Path(f"{i}.png"), Path("t.png"), str(i), COMBINATIONS[i % 7]) for i in range(21)]
    assert sample_indices(pairs, 4) == set(range(7))
    plain = [Pair(Path(f"{i}.png"), Path("t.png"), str(i)) for i in range(10)]
    assert sample_indices(plain, 4) == {0, 1, 2, 3}
    assert sample_indices(plain, 0) == set()


def _existing_outputs(setup: dict[str, Path]) -> dict[Path, bytes]:
    """Outputs of an earlier evaluation, which a failing one must leave as they are."""
    out = setup["out"] / "nafnet-s0"
    files = {out / "metrics.json": b'{"earlier": true}', out / "per_image.csv": b"earlier\n",
             out / "samples" / "MDIR_000.png": b"earlier png"}
    for p, b in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b)
    return files


def _unchanged(files: dict[Path, bytes]) -> None:
    for p, b in files.items():
        assert p.read_bytes() == b, p


def test_corrupt_image_is_one_line_error_and_nothing_is_overwritten(setup: dict[str, Path],
                                                                      capsys: pytest.CaptureFixture) -> None:
    files = _existing_outputs(setup)
    bad = read_manifest(setup["data"], "test")[1].input  # the second image: the first one is processed
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    assert _run(setup) == 2
    _one_error_line(capsys, str(bad), "corrupt")
    _unchanged(files)


def test_mismatched_pair_is_one_line_error(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    files = _existing_outputs(setup)
    pair = read_manifest(setup["data"], "test")[0]
    write_image(pair.target, np.zeros((40, 48, 3), np.uint8))
    rehash_manifest(setup["data"])  # a consistent set whose pair sizes differ
    assert _run(setup) == 2
    _one_error_line(capsys, str(pair.input), "does not match")
    _unchanged(files)


def test_missing_target_is_one_line_error(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    pair = read_manifest(setup["data"], "test")[0]
    pair.target.unlink()
    assert _run(setup) == 2
    _one_error_line(capsys, str(pair.target), "not found")


def test_checkpoint_of_another_model(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    setup["ckpt"] = save_checkpoint(setup["ckpt"].parent / "other.pt", "deepsn_dmum")
    assert _run(setup) == 2
    _one_error_line(capsys, str(setup["ckpt"]), "'deepsn_dmum'", "expected 'nafnet'")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("how", ["truncated", "weights", "pickle"])
def test_tampered_checkpoint(setup: dict[str, Path], capsys: pytest.CaptureFixture, how: str) -> None:
    path = setup["ckpt"]
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        needle = "unreadable or unsafe"
    elif how == "weights":  # a valid file whose tensors no longer fit the model it names
        state = torch.load(path, weights_only=True)
        name = next(iter(state["model_state"]))
        state["model_state"][name] = torch.zeros(3)
        torch.save(state, path)
        needle = "weights do not match"
    else:  # arbitrary code in the pickle: weights_only refuses it
        state = torch.load(path, weights_only=True)
        state["extra"] = _Evil()
        with path.open("wb") as fh:
            torch.save(state, fh, pickle_module=pickle)
        needle = "unreadable or unsafe"
    assert _run(setup) == 2
    err = _one_error_line(capsys, str(path), needle)
    assert "pwned" not in err and "pwned" not in capsys.readouterr().out


def test_unwritable_output_folder(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    blocker = setup["out"].parent / "a-file"
    blocker.write_text("not a folder")
    setup["out"] = blocker / "eval"
    assert _run(setup) == 2
    _one_error_line(capsys, str(blocker))
    assert blocker.read_text() == "not a folder"


def test_image_smaller_than_the_ssim_window(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    pair = read_manifest(setup["data"], "test")[0]
    write_image(pair.input, np.zeros((8, 30, 3), np.uint8))
    write_image(pair.target, np.zeros((8, 30, 3), np.uint8))
    rehash_manifest(setup["data"])
    assert _run(setup) == 2
    _one_error_line(capsys, str(pair.input), "SSIM window")


def test_tool_thread_count_respects_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tools outside the pipeline (restore) take every core, or OMP_NUM_THREADS; stages take params."""
    from pipelines.common import env

    monkeypatch.setattr(env.os, "cpu_count", lambda: 16)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert env.torch_threads() == 16
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert env.torch_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")  # not a count: ignored
    assert env.torch_threads() == 16


def test_skip_sdir_leaves_a_set_out(tiny_mdir: Path, tmp_path: Path) -> None:
    """evaluate.skip_sdir: the named SDIR set is not scored (the others and MDIR are)."""
    import dataclasses
    import shutil

    from pipelines.common.config import load_params
    from pipelines.data.manifest import SDIR_DIR
    from pipelines.engine.evaluation import scored_sets

    data = tmp_path / "data"
    shutil.copytree(tiny_mdir, data)
    img = read_image(next((data / "test").rglob("*.png")))
    for sub in ("input", "target"):
        (data / SDIR_DIR / "rain100h" / sub).mkdir(parents=True)
        write_image(data / SDIR_DIR / "rain100h" / sub / "1.png", img)
    (data / SDIR_DIR / "sots-indoor" / "hazy").mkdir(parents=True)
    (data / SDIR_DIR / "sots-indoor" / "gt").mkdir(parents=True)
    write_image(data / SDIR_DIR / "sots-indoor" / "hazy" / "1400_1.png", img)
    write_image(data / SDIR_DIR / "sots-indoor" / "gt" / "1400.png", img)
    cfg = load_params(REPO / "params.yaml").evaluate
    assert set(scored_sets(data, cfg)) == {"MDIR", "rain100h", "sots-indoor"}
    assert set(scored_sets(data, dataclasses.replace(cfg, skip_sdir=("sots-indoor",)))) == {"MDIR", "rain100h"}

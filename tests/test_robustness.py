"""Hostile inputs and interrupted runs: one regression test (or more) per failure class of docs/robustness.md.

Every user-facing failure is one line on stderr, ``interir-bench <cmd>: error: ...``, with exit status 2, and
leaves earlier outputs as they were. The fuzz suite (tests/test_fuzz.py) throws random values at the same
entry points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines import cli
from pipelines.common.config import ConfigError, load_params
from tests.conftest import REPO, make_tiny_mdir, write_params


def one_error_line(capsys: pytest.CaptureFixture, cmd: str, *needles: str) -> str:
    """The one line a failed command printed on stderr (progress bars aside); checks it names ``needles``."""
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "%|" not in ln]  # no tqdm bars
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


# ----------------------------------------------------------------------------------------- 3. decompression bombs


def bomb_png(path: Path, width: int = 20000, height: int = 10000) -> Path:
    """A PNG that declares ``width`` x ``height`` pixels in a few hundred bytes (its pixel data is a stub)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("size", [(20000, 10000), (10000, 9000)])  # above PIL's 2x limit, and between 1x and 2x
def test_decompression_bomb_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, size) -> None:
    bomb = bomb_png(tmp_path / "bomb.png", *size)
    assert cli.main(["degrade", str(bomb), "--noise", "5", "-o", str(tmp_path / "out.png")]) == 2
    one_error_line(capsys, "degrade", str(bomb), "exceeds the limit")
    assert not (tmp_path / "out.png").exists()
    from tests.test_evaluate import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt")
    assert cli.main(["restore", "--checkpoint", str(ckpt), str(bomb), "-o", str(tmp_path / "r")]) == 2
    one_error_line(capsys, "restore", str(bomb), "pixels")
    assert not (tmp_path / "r").exists()


def test_bomb_in_a_data_root_is_skipped_like_a_corrupt_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_synthesize import _photo_root

    root = _photo_root(tmp_path, n=4)
    bomb_png(root / "clean" / "Set" / "bomb.png")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["synthesize"]["smoke"].update(crop=64, max_train_sources=2, max_test_sources=1, train_pairs_per_source=1)
    raw["train"]["smoke"]["patch"] = 32
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    rc = cli.main(["synthesize", "--params", str(tmp_path / "params.yaml"), "--data-root", str(root),
                   "--out", str(tmp_path / "out"), "--workers", "1"])
    assert rc == 0
    skipped = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("skipped source")]
    assert len(skipped) == 1 and "bomb.png" in skipped[0] and "exceeds the limit" in skipped[0]


# ----------------------------------------------------------------------------------------- 7. degrade's output


def _photo_file(path: Path, h: int = 40, w: int = 48) -> Path:
    from skimage import data

    from pipelines.data.imageio import write_image

    write_image(path, data.astronaut()[:h, :w])
    return path


def test_degrade_never_overwrites_its_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = _photo_file(tmp_path / "a.png")
    before = src.read_bytes()
    assert cli.main(["degrade", str(src), "--noise", "20", "-o", str(src)]) == 2
    one_error_line(capsys, "degrade", "is the input")
    (tmp_path / "sub").mkdir()
    assert cli.main(["degrade", str(src), "--noise", "20", "-o", str(tmp_path / "sub" / ".." / "a.png")]) == 2
    one_error_line(capsys, "degrade", "is the input")
    assert src.read_bytes() == before


def test_degrade_output_folder_or_unwritable(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = _photo_file(tmp_path / "a.png")
    (tmp_path / "dir.png").mkdir()
    assert cli.main(["degrade", str(src), "--noise", "20", "-o", str(tmp_path / "dir.png")]) == 2
    one_error_line(capsys, "degrade", "is a folder")
    (tmp_path / "file").write_text("x")
    assert cli.main(["degrade", str(src), "--noise", "20", "-o", str(tmp_path / "file" / "b.png")]) == 2
    one_error_line(capsys, "degrade", "not a folder")


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC in the middle of the write (simulated: /dev/full is not a folder one can write into)."""
    import errno

    from PIL import Image

    src = _photo_file(tmp_path / "a.png")

    def full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "o" / "b.png"
    assert cli.main(["degrade", str(src), "--noise", "20", "-o", str(out)]) == 2
    one_error_line(capsys, "degrade", str(out), "No space left on device")
    assert list((tmp_path / "o").iterdir()) == []


# ----------------------------------------------------------------------------------------- 8. minor


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    from PIL import Image

    from pipelines.data.imageio import image_size, read_image

    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    arr = read_image(tmp_path / "r.jpg")
    assert arr.shape == (40, 20, 3) and image_size(tmp_path / "r.jpg") == (20, 40)
    assert arr[:15].mean() > 0.9 and arr[25:].mean() < 0.1  # the white half is now on top


def test_restore_creates_nothing_before_the_inputs_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_evaluate import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt")
    assert cli.main(["restore", "--checkpoint", str(ckpt), str(tmp_path / "missing.png"),
                     "-o", str(tmp_path / "out" / "deeper")]) == 2
    one_error_line(capsys, "restore", "missing.png")
    assert not (tmp_path / "out").exists()
    src = _photo_file(tmp_path / "a.png")
    assert cli.main(["restore", "--checkpoint", str(ckpt), str(src), "-o", str(tmp_path), "--overwrite"]) == 2
    one_error_line(capsys, "restore", "is the input")


def test_tiny_source_reports_its_real_size(tmp_path: Path) -> None:
    from pipelines.data.imageio import write_image
    from pipelines.data.sources import Source
    from pipelines.data.synthesis import check_source

    write_image(tmp_path / "t.png", np.full((3, 5, 3), 0.5, np.float32))
    res = check_source((Source("t", tmp_path / "t.png", None, "t"), 128, 64, "ground_plane"))
    assert not res["ok"] and "5x3 (0x0 after cropping) is smaller than the training patch 64" in res["error"]


# ----------------------------------------------------------------------------------------- 2. crafted checkpoints


def crafted(path: Path, model: str = "interir", state=None, **args) -> Path:
    """A checkpoint of ``model``'s smoke weights whose model_args are the smoke preset's with ``args`` on top."""
    import torch

    from interir.registry import create_model, model_args
    from pipelines.engine import checkpoint as ckpt_io

    torch.manual_seed(0)
    weights = create_model(model, "smoke").state_dict() if state is None else state
    ckpt_io.save(path, {"model": model, "model_args": {**model_args(model, "smoke"), **args}, "step": 1,
                        "model_state": weights})
    return path


CRAFTED = [
    ("interir", {"width": 4096}, "model argument 'width' of interir must be in [1, 352], got 4096"),
    ("interir", {"width": 1e7}, "model argument 'width' of interir must be an integer, got 10000000.0"),
    ("nafnet", {"width": 10**7}, "model argument 'width' of nafnet must be in [1, 128]"),
    ("interir", {"colour": 3}, "unexpected model argument 'colour' for interir"),
    ("nafnet", {"enc_blocks": [1] * 40}, "'enc_blocks' of nafnet must have 2 to 4 entries"),
    ("interir", {"width": 352, "depth": 17}, "parameters, more than the limit of 150,000,000"),
    ("interir", {"width": 24}, "weights do not match model 'interir'"),  # in range, but the weights are width 16's
    ("deepsn_net", {"conv": "xconv"}, "unexpected model argument 'conv'"),  # a deepsn_xconv labelled deepsn_net
    ("interir", {"depth": True}, "must be an integer, got True"),
]


def test_crafted_model_args_are_refused_before_allocation(tmp_path: Path) -> None:
    """restore and evaluate refuse the same crafted checkpoints, with one line, in little memory and time."""
    from PIL import Image

    from tests.conftest import run_bounded
    from tests.test_restore import _photo

    Image.fromarray(_photo(24, 24)).save(tmp_path / "a.png")
    argvs, expected = [], []
    for i, (model, args, needle) in enumerate(CRAFTED):
        ckpt = crafted(tmp_path / f"c{i}.pt", model, **args)
        argvs += [["restore", "--checkpoint", str(ckpt), str(tmp_path / "a.png"), "-o", str(tmp_path / "o")],
                  ["evaluate", model, "--checkpoint", str(ckpt), "--params", str(REPO / "params.yaml"),
                   "--data", str(tmp_path / "none"), "--out", str(tmp_path / "e"), "--no-mlflow"]]
        expected += [("restore", ckpt, needle), ("evaluate", ckpt, needle)]
    for r, (cmd, ckpt, needle) in zip(run_bounded(argvs, tmp_path, timeout=120), expected, strict=True):
        lines = r["stderr"].strip().splitlines()
        assert r["rc"] == 2 and len(lines) == 1, r
        assert lines[0].startswith(f"interir-bench {cmd}: error: {ckpt}: ") and needle in lines[0], lines[0]
        assert r["peak_mb"] < 1200, r  # imports take ~550 MB; the smoke model itself a few MB
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()


def test_tensor_shapes_dtypes_and_types_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch
    from PIL import Image

    from interir.registry import create_model
    from tests.test_restore import _photo

    Image.fromarray(_photo(24, 24)).save(tmp_path / "a.png")
    good = create_model("nafnet", "smoke").state_dict()
    key = next(iter(good))
    cases = {
        "shape": ({**good, key: torch.zeros(3, 3)}, f"{key!r} has shape (3, 3)"),
        "dtype": ({**good, key: good[key].double()}, "torch.float64, the model's is torch.float32"),
        "missing": ({k: v for k, v in good.items() if k != key}, f"missing {key!r}"),
        "extra": ({**good, "evil": torch.zeros(1)}, "unexpected 'evil'"),
        "not tensors": ({**good, key: [1, 2]}, "model_state is not a mapping of names to tensors"),
    }
    for name, (state, needle) in cases.items():
        ckpt = crafted(tmp_path / f"{name.replace(' ', '_')}.pt", "nafnet", state=state)
        assert cli.main(["restore", "--checkpoint", str(ckpt), str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]) == 2
        one_error_line(capsys, "restore", str(ckpt), needle)
    from pipelines.engine import checkpoint as ckpt_io

    ckpt_io.save(tmp_path / "t.pt", {"model": ["nafnet"], "model_args": {}, "step": 0, "model_state": {}})
    assert cli.main(["restore", "--checkpoint", str(tmp_path / "t.pt"), str(tmp_path / "a.png"), "-o", "o"]) == 2
    one_error_line(capsys, "restore", "checkpoint field 'model' is a list, expected str")


@pytest.mark.slow  # builds every paper preset on the meta device (~8 s); guards MAX_PARAMS when a preset grows
def test_param_limit_leaves_room_for_every_paper_preset() -> None:
    """Every model a checkpoint can hold (the sizing-only cards, CLIP towers included, are never trained, so never
    checkpointed) stays 3x under the checkpoint limit at its paper preset."""
    import torch

    from interir.registry import create_model, get_card, list_models
    from pipelines.engine.checkpoint import MAX_PARAMS

    trainable = [name for name in list_models() if get_card(name).trainable]
    assert "interir" in trainable and "perceiveir_sizing" not in trainable
    for name in trainable:
        with torch.device("meta"):
            n = sum(p.numel() for p in create_model(name, "paper").parameters())
        assert 3 * n < MAX_PARAMS, name


# ----------------------------------------------------------------------------------------- 1. interrupted runs


def _tree(root: Path) -> dict[str, str]:
    import hashlib

    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _synth_params(tmp: Path, name: str, seed: int) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["synthesize"]["seed"] = seed
    raw["synthesize"]["workers"] = 2
    path = tmp / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _train_argv(tmp: Path, data: Path, params: Path) -> list[str]:
    return ["train", "nafnet", "--params", str(params), "--data", str(data), "--out", str(tmp / "tr"),
            "--ckpt-dir", str(tmp / "ck"), "--no-mlflow"]


def _kill_during(argv: list[str], out: Path, delay: float) -> None:
    """Run ``interir-bench argv`` in a child and SIGKILL it (that process only) ``delay`` seconds after its build
    folder for ``out`` (``.<name>.build-<child pid>``) appears, unless it has finished by then."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    build = out.parent / f".{out.name}.build-{proc.pid}"
    while not build.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_killed_resynthesis_leaves_the_old_set_or_the_new_one(tmp_path: Path) -> None:
    """SIGKILL a synthesis over an existing set (other params) at several moments: the folder always holds the
    complete old set or the complete new one, which train accepts; no pool worker writes on after the kill;
    a rerun gives the new set and clears the killed runs' build folders."""
    import random
    import shutil
    import time

    old_params, new_params = _synth_params(tmp_path, "old.yaml", 0), _synth_params(tmp_path, "new.yaml", 1)
    out, ref = tmp_path / "datasets" / "mdir", tmp_path / "ref" / "mdir"
    assert cli.main(["synthesize", "--params", str(old_params), "--out", str(out), "--workers", "1"]) == 0
    assert cli.main(["synthesize", "--params", str(new_params), "--out", str(ref), "--workers", "1"]) == 0
    old_tree, new_tree = _tree(out), _tree(ref)
    assert old_tree != new_tree and old_tree.keys() & new_tree.keys()  # the same names hold other bytes
    shutil.copytree(out, tmp_path / "old_copy")
    rng = random.Random(0)
    outcomes = []
    for delay in (0.0, rng.uniform(0.2, 1.0), rng.uniform(1.0, 3.0)):  # the build takes 1-2 s on 2 busy cores
        _kill_during(["synthesize", "--params", str(new_params), "--out", str(out)], out, delay)
        leftovers = sorted(out.parent.glob(".mdir.build-*"))
        snapshot = {p: _tree(p) for p in leftovers}
        time.sleep(0.8)
        assert {p: _tree(p) for p in leftovers} == snapshot, "a pool worker kept writing after the kill"
        tree = _tree(out)
        assert tree in (old_tree, new_tree), f"a mixed dataset after a kill {delay:.2f} s into the build"
        outcomes.append("new" if tree == new_tree else "old")
        assert cli.main(_train_argv(tmp_path, out, old_params) + ["--stop-after", "1"]) == 0
        shutil.rmtree(tmp_path / "ck")
        if tree == new_tree:  # the next kill starts from the old set again
            shutil.rmtree(out)
            shutil.copytree(tmp_path / "old_copy", out)
    assert outcomes[0] == "old", outcomes  # killed as the build started
    assert cli.main(["synthesize", "--params", str(new_params), "--out", str(out), "--workers", "1"]) == 0
    assert _tree(out) == new_tree and not list(out.parent.glob(".mdir.*"))


def test_mixed_dataset_is_refused_by_train_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The issue's state: the old manifest, some files already the new run's. Training and evaluation verify
    each file's sha256 as they read it."""
    import shutil

    data = make_tiny_mdir(tmp_path / "mdir")
    other = make_tiny_mdir(tmp_path / "other", seed=1)
    for f in ("train/0.png", "test/1.png"):
        shutil.copyfile(other / f, data / f)
    params = write_params(tmp_path / "params.yaml", iters=2, batch=4, patch=32)
    assert cli.main(_train_argv(tmp_path, data, params)) == 2
    one_error_line(capsys, "train", str(data / "train/0.png"), "does not match the sha256 in the manifest")
    from tests.test_evaluate import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt")
    assert cli.main(["evaluate", "nafnet", "--checkpoint", str(ckpt), "--params", str(params), "--data", str(data),
                     "--out", str(tmp_path / "ev"), "--no-mlflow"]) == 2
    one_error_line(capsys, "evaluate", str(data / "test/1.png"), "does not match the sha256")
    (data / "manifest.csv").write_text((data / "manifest.csv").read_text().replace(",target_sha256", ",x"))
    assert cli.main(_train_argv(tmp_path, data, params)) == 2
    one_error_line(capsys, "train", "manifest lacks column 'target_sha256'")


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_interrupted_output_write_keeps_the_previous_set(stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    """Interrupted between two of its output files, a stage leaves the previous run's files, all of them."""
    from pipelines.common import files

    data = make_tiny_mdir(tmp_path / "mdir")
    params = write_params(tmp_path / "params.yaml", iters=2, batch=2, patch=32, log_every=1, ckpt_every=1)
    from tests.test_evaluate import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt")
    if stage == "train":
        argv, out, second = _train_argv(tmp_path, data, params), tmp_path / "tr" / "nafnet-s0", "train.json"
    else:
        argv = ["evaluate", "nafnet", "--checkpoint", str(ckpt), "--params", str(params), "--data", str(data),
                "--out", str(tmp_path / "ev"), "--no-mlflow"]
        out, second = tmp_path / "ev" / "nafnet-s0", "metrics.json"
    assert cli.main(argv) == 0
    before = _tree(out)
    real = files.write_text

    def interrupted(path, text):
        if Path(path).name == second:
            raise KeyboardInterrupt  # Ctrl-C after the first file of the set was written
        real(path, text)

    monkeypatch.setattr("pipelines.engine.loop.write_text" if stage == "train" else
                        "pipelines.engine.evaluation.write_text", interrupted)
    import shutil

    shutil.rmtree(tmp_path / "ck", ignore_errors=True)
    write_params(tmp_path / "params.yaml", iters=3, batch=2, patch=32, log_every=1, ckpt_every=1)  # other outputs
    assert cli.main(argv) == 130
    assert _tree(out) == before and not list(out.parent.glob(".*"))


def test_replace_dir_without_renameat2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two-rename fallback, and an old folder set aside by a run killed between them is put back."""
    from pipelines.common import files

    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    target = tmp_path / "set"
    for content in ("one", "two"):
        with files.atomic_dir(target) as build:
            (build / "f").write_text(content)
    assert (target / "f").read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    target.rename(tmp_path / ".set.old-999999999")  # killed between the renames: no target, the old set aside
    with pytest.raises(RuntimeError), files.atomic_dir(target):
        assert (target / "f").read_text() == "two"  # put back before the new build starts
        raise RuntimeError
    assert (target / "f").read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["set"]


# ----------------------------------------------------------------------------------------- 6. the MLflow UI


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_busy_port_is_one_line(capsys: pytest.CaptureFixture) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["ui", "--port", str(port)]) == 2
    one_error_line(capsys, "ui", f"port {port} on 127.0.0.1 is in use")


# A stand-in for `mlflow ui`: it starts a listening grandchild (as mlflow starts uvicorn) and dies on SIGTERM
# without passing it on, which is what left uvicorn listening.
_FAKE_SERVER = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import socket, sys, time; s = socket.socket(); "
                          "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                          "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(600)", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(600)
"""


def test_ui_sigterm_stops_the_whole_server_group(tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    port = _free_port()
    (tmp_path / "fake.py").write_text(_FAKE_SERVER)
    launcher = (f"import sys; from pipelines.commands import ui; "
                f"ui.command = lambda h, p, u: [sys.executable, {str(tmp_path / 'fake.py')!r}, str(p)]; "
                f"from pipelines import cli; sys.exit(cli.main(['ui', '--port', '{port}']))")
    proc = subprocess.Popen([sys.executable, "-c", launcher], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().startswith("MLflow UI: http://127.0.0.1:")
    grandchild = int(proc.stdout.readline())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the grandchild listens
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)  # gone, not orphaned
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more


def test_killed_train_and_evaluate_leave_the_old_result_or_the_new_one(tmp_path: Path) -> None:
    """SIGKILL train and evaluate while they write their outputs (as their build folder appears) and at a random
    later moment: the run folder holds the previous run's files or the new run's, all of them, never a mix;
    a rerun completes the new one."""
    import random
    import shutil

    data = make_tiny_mdir(tmp_path / "mdir")
    old_p = write_params(tmp_path / "old.yaml", iters=2, batch=2, patch=32, log_every=1, ckpt_every=1)
    new_p = write_params(tmp_path / "new.yaml", iters=3, batch=2, patch=32, log_every=1, ckpt_every=1)
    out, ev, ck = tmp_path / "tr" / "nafnet-s0", tmp_path / "ev" / "nafnet-s0", tmp_path / "ck"

    def train(params: Path) -> list[str]:
        return _train_argv(tmp_path, data, params)

    def evaluate(params: Path) -> list[str]:
        return ["evaluate", "nafnet", "--params", str(params), "--data", str(data), "--train-dir", str(out.parent),
                "--out", str(ev.parent), "--no-mlflow"]

    trees = {}
    for name, params in (("new", new_p), ("old", old_p)):  # the old result stays in place
        shutil.rmtree(ck, ignore_errors=True)
        assert cli.main(train(params)) == 0 and cli.main(evaluate(params)) == 0
        trees[name] = (_tree(out), _tree(ev))
    assert trees["old"][0] != trees["new"][0] and trees["old"][1] != trees["new"][1]
    rng = random.Random(1)
    shutil.rmtree(ck)
    for delay in (0.0, rng.uniform(0, 0.05)):  # the write takes a few tens of ms
        _kill_during(train(new_p), out, delay)
        assert _tree(out) in (trees["old"][0], trees["new"][0]), f"mixed train outputs, kill {delay:.2f} s in"
    assert cli.main(train(new_p)) == 0 and _tree(out) == trees["new"][0]  # resumed or not: the same weights
    for delay in (0.0,):  # as the build starts: the window in which a mix could arise
        _kill_during(evaluate(new_p), ev, delay)
        assert _tree(ev) in (trees["old"][1], trees["new"][1]), f"mixed evaluate outputs, kill {delay:.2f} s in"
    assert cli.main(evaluate(new_p)) == 0 and _tree(ev) == trees["new"][1]
    assert not list(out.parent.glob(".*")) and not list(ev.parent.glob(".*"))  # the killed runs' folders cleared

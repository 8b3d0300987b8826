"""Fuzz suite (hypothesis): params values, numeric flags, image files and checkpoints thrown at the command line.

Every case must end in exit 0, or exit 2 with one line on stderr (``interir-bench <cmd>: error: ...``), never a
traceback, within a memory bound: the commands run in-process through :func:`pipelines.cli.main` under a
lowered soft ``RLIMIT_AS`` (so a runaway allocation fails instead of swapping), and each case's peak resident
size is measured (``/proc/self/clear_refs`` resets the peak between cases) and compared with
:data:`MEMORY_BOUND_MB`. A checkpoint must be refused before anything is allocated: its error line never
speaks of memory.

Bounded for ``make test`` (about 40 s on a busy 2-core machine): a fixed number of examples per target,
derandomized, so every run tries the same cases. ``INTERIR_FUZZ=thorough`` (random, 20x the examples) digs
deeper: ``INTERIR_FUZZ=thorough .venv/bin/python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from pipelines import cli
from tests.conftest import REPO

settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("thorough", deadline=None, derandomize=False, database=None, print_blob=True,
                          suppress_health_check=list(HealthCheck))
PROFILE = os.environ.get("INTERIR_FUZZ", "ci")
settings.load_profile(PROFILE)
SCALE = 20 if PROFILE == "thorough" else 1
MEMORY_BOUND_MB = 1024  # peak resident memory one case may add (a crafted case must not get near it)
ADDRESS_SPACE_GB = 8  # soft RLIMIT_AS above the process's current size while the fuzz cases run


def examples(n: int):
    return settings(max_examples=n * SCALE)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Shared inputs: a small photo, a nafnet smoke checkpoint, the repository's params."""
    from skimage import data

    from pipelines.data.imageio import write_image
    from tests.test_evaluate import save_checkpoint

    root = tmp_path_factory.mktemp("fuzz")
    write_image(root / "photo.png", data.astronaut()[100:116, 200:216])
    return {"root": root, "photo": root / "photo.png", "ckpt": save_checkpoint(root / "nafnet.pt"),
            "params": REPO / "params.yaml"}


@pytest.fixture(scope="module", autouse=True)
def bounded_address_space():
    """Lower the soft address-space limit while the module runs; put it back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmSize")).split()[1]) * 1024
    limit = size + ADDRESS_SPACE_GB * 2**30
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    torch.set_num_threads(1)
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _status_kb(key: str) -> int:
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith(key)).split()[1])


def run(argv: list[str]) -> tuple[int, list[str]]:
    """``interir-bench argv`` in-process: (exit status, the stderr lines a terminal would show).

    Checks the contract: exit 0 or 2; on 2 exactly one line, ``interir-bench <cmd>: error: ...``; never a
    traceback; at most :data:`MEMORY_BOUND_MB` of peak resident memory above the resident size at the start.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident size (VmHWM)
        measured = True
    except OSError:  # not Linux, or not allowed: the address-space limit alone bounds the case
        measured = False
    before = _status_kb("VmRSS")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings(record=True) as caught:
        rc = cli.main(argv)  # any exception but a user error escapes here: a failure of the test
    # A warning Python would print on stderr (not the deprecations it hides by default) breaks the one line.
    shown = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    added_mb = (_status_kb("VmHWM") - before) / 1024
    lines = [ln.split("\r")[-1] for ln in err.getvalue().split("\n")]
    lines = [ln for ln in lines if ln.strip() and "%|" not in ln]  # what stays on screen; no progress bars
    assert rc in (0, 2), (argv, rc, lines)
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
    if rc == 2:
        assert len(lines) == 1 and lines[0].startswith(f"interir-bench {argv[0]}: error: "), (argv, lines)
        assert not shown, (argv, [f"{w.category.__name__}: {w.message}" for w in shown])
    assert not measured or added_mb < MEMORY_BOUND_MB, (argv, f"{added_mb:.0f} MB")
    event(f"exit {rc}")  # pytest --hypothesis-show-statistics: how many cases passed, how many were refused
    return rc, lines


# ------------------------------------------------------------------------------------------------ params values


def _leaves(node, prefix=()) -> list[tuple[str, ...]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*prefix, k))]
    return [prefix]


PARAM_PATHS = _leaves(yaml.safe_load((REPO / "params.yaml").read_text()))
SCALARS = st.one_of(
    st.integers(-(2**70), 2**70), st.integers(-3, 10), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.booleans(), st.none(), st.sampled_from(["1e-4", "0x10", "1_000", ".nan", "", "smoke"]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))


@examples(300)
@given(edits=st.lists(st.tuples(st.sampled_from(PARAM_PATHS), VALUES, st.sampled_from(["set", "delete", "add"])),
                      min_size=1, max_size=3))
def test_params_values(work, edits) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for path, value, how in edits:
        node = raw
        for key in path[:-1]:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            if isinstance(node, dict):
                if how == "delete":
                    node.pop(path[-1], None)
                elif how == "add":
                    node[f"{path[-1]}_x"] = value
                else:
                    node[path[-1]] = value
    params = work["root"] / "fuzz_params.yaml"
    params.write_text(yaml.safe_dump(raw))
    rc, lines = run(["synthesize", "--params", str(params), "--data-root", str(work["root"] / "no-such-root"),
                     "--out", str(work["root"] / "never")])
    assert rc == 2  # a params error, or else the missing data root
    assert not (work["root"] / "never").exists()


@examples(60)
@given(text=st.one_of(st.binary(max_size=300).map(lambda b: b.decode("latin-1")), st.text(max_size=300)))
def test_params_file_text(work, text: str) -> None:
    params = work["root"] / "fuzz_text.yaml"
    params.write_text(text, encoding="utf-8", errors="surrogateescape")
    assert run(["synthesize", "--params", str(params), "--data-root", str(work["root"] / "none")])[0] == 2


# ------------------------------------------------------------------------------------------------ numeric flags

NUMBER_TEXT = st.one_of(
    st.integers(-(2**66), 2**66).map(str), st.integers(-5, 600).map(str), st.floats().map(repr),
    st.floats(-1e3, 1e3).map(lambda f: f"{f:.3g}"),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "-0", "0x10", "1_000", "", " 5", "١٢", "5e-324", "9" * 40]),
    st.text(max_size=6))


@examples(100)
@given(flag=st.sampled_from(["--haze", "--rain", "--noise", "--seed"]), value=NUMBER_TEXT,
       others=st.fixed_dictionaries({"--noise": st.sampled_from(["0", "12.5"]),
                                     "--rain": st.sampled_from(["0", "80"])}))
def test_degrade_numbers(work, flag: str, value: str, others: dict) -> None:
    extra = [f"{k}={v}" for k, v in others.items() if k != flag]
    rc, _ = run(["degrade", str(work["photo"]), f"{flag}={value}", *extra, "-o", str(work["root"] / "deg.png")])
    if rc == 0:
        assert (work["root"] / "deg.png").is_file()


@examples(60)
@given(tile=st.one_of(NUMBER_TEXT, st.integers(0, 40).map(str)),
       overlap=st.one_of(NUMBER_TEXT, st.integers(0, 40).map(str)))
def test_restore_numbers(work, tile: str, overlap: str) -> None:
    run(["restore", "--checkpoint", str(work["ckpt"]), str(work["photo"]), "-o", str(work["root"] / "rest"),
         "--overwrite", f"--tile={tile}", f"--overlap={overlap}"])


@examples(80)
@given(cmd=st.sampled_from(["train", "evaluate", "synthesize", "profile"]), value=NUMBER_TEXT)
def test_stage_numbers(work, cmd: str, value: str) -> None:
    missing = str(work["root"] / "missing")
    argv = {
        "train": ["train", "nafnet", f"--seed={value}", "--data", missing, "--no-mlflow", "--out", missing],
        "evaluate": ["evaluate", "nafnet", f"--seed={value}", "--data", missing, "--no-mlflow", "--out", missing],
        "synthesize": ["synthesize", f"--workers={value}", "--data-root", missing, "--out", missing],
        "profile": ["profile", "nafnet", "--meta", f"--size={value}", f"--repeats={value}"],
    }[cmd]
    rc, _ = run([argv[0], "--params", str(work["params"]), *argv[1:]] if cmd != "profile" else argv)
    assert rc == 2 or cmd == "profile"  # the stages stop at the missing data at the latest


# ------------------------------------------------------------------------------------------------ image files

MODES = ["1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F"]
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".webp": "WEBP", ".gif": "GIF"}


def _png_header(width: int, height: int, depth: int, colour: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _bmp_header(width: int, height: int, bits: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 16, 0, 0, 14 + len(info)) + info + b"\0" * 16


@st.composite
def image_files(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["valid", "truncated", "flipped", "random", "png_header", "bmp_header"]))
    if kind == "random":
        return draw(st.sampled_from(list(FORMATS))), draw(st.binary(max_size=600))
    if kind == "png_header":
        size = st.integers(0, 2**31 - 1) | st.integers(1, 12000)
        return ".png", _png_header(draw(size), draw(size), draw(st.sampled_from([1, 2, 4, 8, 16, 3])),
                                   draw(st.sampled_from([0, 2, 3, 4, 6, 5])))
    if kind == "bmp_header":
        size = st.integers(-(2**31), 2**31 - 1) | st.integers(1, 12000)
        return ".bmp", _bmp_header(draw(size), draw(size), draw(st.sampled_from([1, 4, 8, 16, 24, 32, 7])))
    from PIL import Image

    suffix, mode = draw(st.sampled_from(list(FORMATS))), draw(st.sampled_from(MODES))
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    arr = np.random.default_rng(draw(st.integers(0, 9))).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode) if mode not in ("I;16",) else Image.fromarray(arr[..., 0]).convert("I;16")
    buf = io.BytesIO()
    try:
        img.save(buf, format=FORMATS[suffix])
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # PIL cannot write this mode in this format
    data = buf.getvalue()
    if kind == "truncated":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif kind == "flipped":
        pos = draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4))
        data = bytearray(data)
        for p in pos:
            data[p] ^= draw(st.integers(1, 255))
        data = bytes(data)
    return suffix, data


@examples(250)
@given(image=image_files())
def test_image_files(work, image: tuple[str, bytes]) -> None:
    suffix, data = image
    src = work["root"] / f"fuzz{suffix}"
    src.write_bytes(data)
    run(["degrade", str(src), "--noise=5", "--haze=80", "-o", str(work["root"] / "fuzz_out.png")])


@examples(50)
@given(image=image_files())
def test_image_files_restore(work, image: tuple[str, bytes]) -> None:
    suffix, data = image
    src = work["root"] / f"fuzz_r{suffix}"
    src.write_bytes(data)
    run(["restore", "--checkpoint", str(work["ckpt"]), str(src), "-o", str(work["root"] / "rest_img"), "--overwrite",
         "--tile=0"])


# ------------------------------------------------------------------------------------------------ checkpoints

ARG_VALUES = st.one_of(st.integers(-3, 40), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.booleans(),
                       st.none(), st.text(max_size=6), st.lists(st.integers(-2, 50), max_size=6),
                       st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@st.composite
def checkpoints(draw) -> dict:
    from interir.registry import _entry, list_models, model_args

    name = draw(st.sampled_from([*list_models(), "no_such_model"]))
    known = sorted(_entry(name).presets["paper"]) if name != "no_such_model" else ["width"]
    preset = model_args(name if name != "no_such_model" else "nafnet", "smoke")
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()}
    for key in draw(st.lists(st.sampled_from([*known, "evil", "conv", "__class__"]), max_size=3)):
        args[key] = draw(ARG_VALUES)
    weights_of = draw(st.sampled_from(["same", "nafnet", "none"]))
    state: dict = {}
    if weights_of != "none":
        from interir.registry import create_model

        with torch.device("meta"):
            ref = create_model(name if weights_of == "same" and name != "no_such_model" else "nafnet", "smoke")
        fill = draw(st.sampled_from([0.0, 0.0, float("nan"), 1e38]))
        good = {k: torch.full(v.shape, fill if v.is_floating_point() else 0, dtype=v.dtype)
                for k, v in ref.state_dict().items()}
        state = dict(good)
        for _ in range(draw(st.integers(0, 2))):
            key = draw(st.sampled_from(sorted(state)))
            state[key] = draw(st.sampled_from([
                torch.zeros(draw(st.lists(st.integers(0, 5), max_size=3))), good[key].double(), [1, 2], None,
                torch.zeros(3, dtype=torch.int64)]))
    ckpt = {"format": draw(st.sampled_from(["interir-bench/checkpoint/v1"] * 4 + ["v0", None])), "model": name,
            "model_args": args, "step": draw(st.sampled_from([0, 5, -1, "5", None])), "model_state": state}
    for key in draw(st.lists(st.sampled_from(["model", "model_args", "model_state", "step", "format"]), max_size=1)):
        ckpt[key] = draw(ARG_VALUES)
    return ckpt


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # a failing case prints its tensors
@examples(150)
@given(ckpt=checkpoints())
def test_checkpoints(work, ckpt: dict) -> None:
    path = work["root"] / "fuzz.pt"
    with open(path, "wb") as fh:
        torch.save(ckpt, fh)
    rc, lines = run(["restore", "--checkpoint", str(path), str(work["photo"]), "-o", str(work["root"] / "rest_ck"),
                     "--overwrite"])
    if rc == 2:
        assert "memory" not in lines[0] and "allocate" not in lines[0], lines[0]

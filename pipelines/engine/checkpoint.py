"""Self-describing checkpoints (nanoGPT style), written atomically, loaded as untrusted input.

A checkpoint holds everything needed to rebuild and resume: model name and constructor
args, preset, the resolved train config, step, model/optimizer state, RNG states and the
data version. Loading always uses ``torch.load(..., weights_only=True)``: RNG states are
stored as tensors and plain Python containers for that reason.

A checkpoint is untrusted input, and so is what it asks to build. :func:`build_model` checks the constructor
arguments against the model's presets (:func:`interir.registry.check_args`: known keys, preset types, values
at most a few times the presets'), builds the model on the ``meta`` device (which allocates nothing), bounds
its parameter count by :data:`MAX_PARAMS` and compares every state_dict key, shape and dtype with the
checkpoint's before the model is built for real. Every failure is a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.common.env import UserError
from pipelines.common.files import atomic_path

FORMAT = "interir-bench/checkpoint/v1"
REQUIRED = ("format", "model", "model_args", "step", "model_state")
# The types of the fields every reader relies on (train, evaluate, restore and the report read the same files).
FIELD_TYPES: dict[str, tuple[type, ...]] = {"model": (str,), "model_args": (dict,), "step": (int,),
                                            "model_state": (dict,), "seed": (int,), "data_version": (str,),
                                            "preset": (str,), "resume_key": (dict,), "mlflow_run_id": (str, type(None))}
# Largest model a checkpoint may describe: 4x the largest paper preset (interir_arconv, 36.7 M parameters;
# tests/test_robustness.py checks the margin). 150 M float32 parameters are 600 MB.
MAX_PARAMS = 150_000_000


class CheckpointError(UserError):
    """A checkpoint that cannot be used (unreadable, tampered, or of another model)."""


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format tag) atomically to ``path``.

    Through a file object: given a path, ``torch.save`` names the archive's root folder after the file,
    and the temporary name would make the same checkpoint different bytes on every run.
    """
    payload = {"format": FORMAT, **payload}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)


def load(path: str | Path, expect_model: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, disallowed globals
        raise CheckpointError(f"{path}: unreadable or unsafe checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an interir-bench checkpoint")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing[0]!r}")
    for key, types in FIELD_TYPES.items():
        if key in ckpt and (not isinstance(ckpt[key], types) or isinstance(ckpt[key], bool)):
            raise CheckpointError(f"{path}: checkpoint field {key!r} is a {type(ckpt[key]).__name__}, expected "
                                  f"{' or '.join(t.__name__ for t in types)}")
    if expect_model is not None and ckpt["model"] != expect_model:
        raise CheckpointError(f"{path}: checkpoint is of model {ckpt['model']!r}, expected {expect_model!r}")
    return ckpt


def load_model(path: str | Path, expect_model: str | None = None) -> tuple[dict[str, Any], torch.nn.Module]:
    """(checkpoint, model in eval mode on the CPU): the one way ``restore``, ``evaluate`` and the report read a
    checkpoint, so they accept and refuse the same files (``evaluate`` and the report also name the model)."""
    state = load(path, expect_model)
    return state, build_model(state, path).eval()


def build_model(ckpt: dict[str, Any], path: str | Path = "<checkpoint>") -> torch.nn.Module:
    """Rebuild the model a checkpoint describes and load its weights, checking everything first (module doc)."""
    from interir.registry import _entry, check_args  # noqa: PLC0415  (registry import is lazy by design)

    name = ckpt["model"]
    try:
        entry = _entry(name)
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None
    try:
        args = check_args(name, ckpt["model_args"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            skeleton = entry.factory(**args)
    except Exception as exc:  # the factory's own checks on untrusted arguments: TypeError, ValueError, ...
        raise CheckpointError(f"{path}: model_args do not build {name!r} ({first_line(exc)})") from None
    n_params = sum(p.numel() for p in skeleton.parameters())
    if n_params > MAX_PARAMS:
        raise CheckpointError(f"{path}: model_args describe a {name!r} of {n_params:,} parameters, more than the "
                              f"limit of {MAX_PARAMS:,}")
    check_state(skeleton, ckpt["model_state"], path, name)
    del skeleton
    model = entry.factory(**args)
    try:
        model.load_state_dict(ckpt["model_state"], strict=True)
    except RuntimeError as exc:  # a module's own check of the loaded values (e.g. ARConv's grid)
        detail = "; ".join(ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip())[:200]
        raise CheckpointError(f"{path}: weights do not load into {name!r} ({detail or first_line(exc)})") from None
    return model


def check_state(model: torch.nn.Module, state: Any, path: str | Path, name: str) -> None:
    """Every key, shape and dtype of ``model.state_dict()`` (on any device, ``meta`` too) matches ``state``."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: model_state is not a mapping of names to tensors")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problem = (f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}" if unexpected else None)
    for key, ref in expected.items():
        if problem:
            break
        got = state[key]
        if tuple(got.shape) != tuple(ref.shape):
            problem = f"{key!r} has shape {tuple(got.shape)}, the model's is {tuple(ref.shape)}"
        elif got.dtype != ref.dtype:
            problem = f"{key!r} is {got.dtype}, the model's is {ref.dtype}"
    if problem:
        raise CheckpointError(f"{path}: weights do not match model {name!r} ({problem})")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:160]}" if text else exc.__class__.__name__

"""Self-describing checkpoints (nanoGPT style), written atomically, loaded as untrusted input.

A checkpoint holds everything needed to rebuild and resume: model name and constructor
args, preset, the resolved train config, step, model/optimizer state, RNG states and the
data version. Loading always uses ``torch.load(..., weights_only=True)``: RNG states are
stored as tensors and plain Python containers for that reason.
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
    if expect_model is not None and ckpt["model"] != expect_model:
        raise CheckpointError(f"{path}: checkpoint is of model {ckpt['model']!r}, expected {expect_model!r}")
    return ckpt


def build_model(ckpt: dict[str, Any], path: str | Path = "<checkpoint>") -> torch.nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (strictly)."""
    from interir.registry import _entry  # noqa: PLC0415  (registry import is lazy by design)

    try:
        entry = _entry(ckpt["model"])
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None
    args = ckpt["model_args"]
    model = entry.factory(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    try:
        model.load_state_dict(ckpt["model_state"], strict=True)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: weights do not match model {ckpt['model']!r} ({first})") from None
    return model

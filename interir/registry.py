"""timm-style model registry: one factory function per variant, explicit registration.

Every model module calls :func:`register_model` on its factory at import time; the
module list in :data:`_MODEL_MODULES` is imported lazily on first use (explicit, no
directory scans), so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interir.presets import PRESETS

if TYPE_CHECKING:  # the registry itself needs no torch until a model is built
    import torch.nn as nn

# Modules that register models. Adding a model = adding its module here.
_MODEL_MODULES = (
    "baselines.nafnet",
    "interir.model",
    "baselines.deepsn_net",
    "baselines.fdtanet",
    "baselines.conv_alternatives",
    "baselines.restormer",
    "baselines.promptir",
    "baselines.airnet",
    "baselines.vlunet_sizing",
    "baselines.perceiveir_sizing",
)


@dataclass(frozen=True)
class Recipe:
    """A model's published training recipe, read from its official code (``source``), for ``train.recipe:
    original``. The optimiser, learning rates, schedule, loss and clipping replace the shared recipe's at every
    profile; ``batch``, ``patch`` and ``iters`` (0: the profile's) only at the paper profile, so the CPU
    profiles keep equal budgets. ``notes`` says what could not be carried over as published."""

    source: str
    optimizer: str  # adam | adamw
    lr: float
    lr_min: float
    betas: tuple[float, float]
    weight_decay: float
    schedule: str  # cosine | linear | wsd (pipelines.engine.loop.lr_at)
    loss: str  # a name of interir.losses.LOSSES, or "model": the model's own training_losses (AirNet)
    warmup_fraction: float = 0.0  # of the budget
    encoder_fraction: float = 0.0  # loss "model": the first fraction of the budget trains the encoder alone
    fft_weight: float = 0.0
    grad_clip: float = 0.0
    batch: int = 0
    patch: int = 0
    iters: int = 0
    notes: str = ""


@dataclass(frozen=True)
class ModelCard:
    """What a user needs to judge a model's numbers.

    ``paper_rows`` says where the paper reports this model: (table id, row label) pairs such as
    ``("table4", "baseline + RESM")``, the label spelled as in the table's reference CSV
    (``pipelines/reporting/reference``, the only place the paper's numbers live). ``deviations``
    lists where this implementation departs from the paper or the official code. How MACs are
    counted is the harness's one convention (``pipelines.engine.profiling.CONVENTION``). ``recipe`` is the
    published training recipe (``train.recipe: original``); ``recipe_note`` says why there is none.
    """

    name: str
    summary: str
    paper_rows: tuple[tuple[str, str], ...] = ()
    deviations: tuple[str, ...] = ()
    batch_independent: bool = True
    stride: int = 1  # inputs are padded to a multiple of this
    # Same-size test images per forward pass in `evaluate` when params say evaluate.batch: 0 (auto).
    # Measured on the CPU (benchmarks/bench_eval.py): batching speeds up the models that work on a
    # coarse grid 2-3.5x and slows the full-resolution U-Nets (NAFNet, FDTANet), which get 1.
    eval_batch: int = 8
    recipe: Recipe | None = None
    recipe_note: str = ""
    trainable: bool = True  # False: built for sizing only (params, MACs, latency); the train stage refuses it


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    card: ModelCard
    presets: dict[str, dict[str, Any]]


_REGISTRY: dict[str, _Entry] = {}
_loaded = False


def register_model(card: ModelCard, presets: dict[str, dict[str, Any]]):
    """Decorator registering ``factory(**kwargs)`` under ``card.name`` with its presets."""
    missing = [p for p in PRESETS if p not in presets]
    if missing:
        raise ValueError(f"model {card.name!r} lacks presets {missing}")

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if card.name in _REGISTRY and _REGISTRY[card.name].factory is not factory:
            raise ValueError(f"model {card.name!r} registered twice")
        _REGISTRY[card.name] = _Entry(factory, card, {k: dict(v) for k, v in presets.items()})
        return factory

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _MODEL_MODULES:
        importlib.import_module(mod)
    _loaded = True


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_card(name: str) -> ModelCard:
    return _entry(name).card


def model_args(name: str, preset: str = "smoke", **overrides: Any) -> dict[str, Any]:
    """The constructor arguments ``create_model`` would use (recorded in checkpoints)."""
    entry = _entry(name)
    if preset not in entry.presets:
        raise KeyError(f"model {name!r} has no preset {preset!r}; presets: {', '.join(entry.presets)}")
    return {**entry.presets[preset], **overrides}


# Constructor arguments from an untrusted source (a checkpoint) may reach this many times the largest value any
# preset uses (width, depth, expansion ratios, ...): room for a model between the presets, not one that takes
# gigabytes before its first weight is checked.
ARG_FACTOR = 4


def check_args(name: str, args: Any) -> dict[str, Any]:
    """Validate constructor arguments that come from outside the code (a checkpoint's ``model_args``).

    Nothing is built. A key must be one that a preset of ``name`` uses or that the factory names; a value must
    have the type of that key's preset values (a list stands for a tuple), an integer must lie between
    min(1, the smallest preset value) and :data:`ARG_FACTOR` times the largest one, a tuple must be as long as
    a preset's, a string one of the values the presets or the factory's default use. Returns the arguments with
    lists as tuples; raises ``ValueError`` with a one-line message naming the key.
    """
    entry = _entry(name)
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ValueError(f"model_args must be a mapping of names to values, got {type(args).__name__}")
    seen: dict[str, list[Any]] = {}
    for preset in entry.presets.values():
        for key, value in preset.items():
            seen.setdefault(key, []).append(value)
    for param in inspect.signature(entry.factory).parameters.values():
        if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            seen.setdefault(param.name, [])
            if param.default is not param.empty:
                seen[param.name].append(param.default)
    out = {}
    for key, value in args.items():
        if key not in seen:
            raise ValueError(f"unexpected model argument {key!r} for {name} (known: {', '.join(sorted(seen))})")
        out[key] = _check_value(f"model argument {key!r} of {name}", value, seen[key])
    return out


def _check_value(what: str, value: Any, examples: list[Any]) -> Any:
    """``value`` checked against the values the presets give the same key (see :func:`check_args`)."""
    if value is None and None in examples:
        return None
    given = [e for e in examples if e is not None]
    if isinstance(value, (list, tuple)) and given and all(isinstance(e, (list, tuple)) for e in given):
        lengths = [len(e) for e in given]
        if not min(lengths) <= len(value) <= max(lengths):
            raise ValueError(f"{what} must have {min(lengths)} to {max(lengths)} entries, got {len(value)}")
        items = [v for e in given for v in e]
        return tuple(_check_value(what, v, items) for v in value)
    kinds = {type(e) for e in given}
    if kinds == {bool}:
        if not isinstance(value, bool):
            raise ValueError(f"{what} must be true or false, got {_short(value)}")
        return value
    if kinds == {int}:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} must be an integer, got {_short(value)}")
        lo, hi = min(1, *given), ARG_FACTOR * max(1, *given)
        if not lo <= value <= hi:
            raise ValueError(f"{what} must be in [{lo}, {hi}], got {_short(value)}")
        return value
    if kinds and kinds <= {int, float}:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{what} must be a number, got {_short(value)}")
        hi = ARG_FACTOR * max(1.0, *(abs(e) for e in given))
        if not -hi <= value <= hi:
            raise ValueError(f"{what} must be in [{-hi:g}, {hi:g}], got {_short(value)}")
        return value
    if kinds == {str}:
        if value not in given:
            raise ValueError(f"{what} must be one of {', '.join(map(repr, sorted(set(given))))}, got {_short(value)}")
        return value
    raise ValueError(f"{what}: {_short(value)} is not a value this model takes")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def create_model(name: str, preset: str = "smoke", **overrides: Any) -> nn.Module:
    """Build model ``name`` from its ``preset`` with keyword ``overrides``."""
    return _entry(name).factory(**model_args(name, preset, **overrides))

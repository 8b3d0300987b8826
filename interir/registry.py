"""timm-style model registry: one factory function per variant, explicit registration.

Every model module calls :func:`register_model` on its factory at import time; the
module list in :data:`_MODEL_MODULES` is imported lazily on first use (explicit, no
directory scans), so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
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
class ModelCard:
    """What a user needs to judge a model's numbers.

    ``paper`` holds numbers quoted from the paper (always labelled as such in reports);
    ``flop_convention`` says how MACs are counted; ``deviations`` lists where this
    implementation departs from the paper or the official code.
    """

    name: str
    summary: str
    paper: dict[str, float] = field(default_factory=dict)
    flop_convention: str = "MACs at 1x3x256x256 (fvcore, FFT counted analytically)"
    deviations: tuple[str, ...] = ()
    batch_independent: bool = True
    stride: int = 1  # inputs are padded to a multiple of this
    # Same-size test images per forward pass in `evaluate` when params say evaluate.batch: 0 (auto).
    # Measured on the CPU (benchmarks/bench_eval.py): batching speeds up the models that work on a
    # coarse grid 2-3.5x and slows the full-resolution U-Nets (NAFNet, FDTANet), which get 1.
    eval_batch: int = 8


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


def create_model(name: str, preset: str = "smoke", **overrides: Any) -> nn.Module:
    """Build model ``name`` from its ``preset`` with keyword ``overrides``."""
    return _entry(name).factory(**model_args(name, preset, **overrides))

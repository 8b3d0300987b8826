"""InterIR: physically interpretable multi-degradation restoration (arXiv 2511.10166), re-implemented.

``from interir import create_model`` works as usual; the registry (and torch) load on first use, so that
importing ``interir.presets`` alone stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ModelCard", "create_model", "get_card", "list_models", "model_args", "register_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("interir.registry"), name)
    raise AttributeError(f"module 'interir' has no attribute {name!r}")

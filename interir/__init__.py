"""InterIR: physically interpretable multi-degradation restoration (arXiv 2511.10166), re-implemented."""

from interir.registry import ModelCard, create_model, get_card, list_models, model_args, register_model

__all__ = ["ModelCard", "create_model", "get_card", "list_models", "model_args", "register_model"]

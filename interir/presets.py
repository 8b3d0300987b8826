"""The preset names every registered model provides, smallest first: the one owner of these names.

The pipeline's profiles carry the same names (a profile trains every model at the preset of its name),
so ``pipelines.common.config`` imports them from here. No torch, no models: cheap to import.
"""

PRESETS = ("smoke", "small", "paper")

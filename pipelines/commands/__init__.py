"""``interir-bench`` subcommands that are not DVC stages (models, degrade, restore, ui)."""

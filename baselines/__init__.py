"""Re-implementations of the paper's baselines, registered in :mod:`interir.registry`."""

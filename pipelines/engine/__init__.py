"""Engine: the training loop, distributed helpers, checkpoints, inference, metrics, evaluation, MAC counting."""

"""Training loop, objective assembly, checkpoints, distributed runs."""

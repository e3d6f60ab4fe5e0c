"""A training run from its config to its files: ``TrainConfig`` and presets, the run layout, the
trainer and its pieces, checkpoints, distributed set-up, and the import of official checkpoints."""

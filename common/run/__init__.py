"""The machinery of a training run: the epoch loop, its parts, settings and flags, checkpoints, files, plots."""

"""The framework core: backend switch, layers, optimizers, trainer, utilities."""

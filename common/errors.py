"""Errors a user can fix.

Library code raises these with a one-line message that names the problem and
the fix; the scripts catch :class:`UserError` and print that line instead of a
traceback.
"""


class UserError(Exception):
    """Base class: bad input, missing data, a wrong checkpoint, a missing backend."""


class BackendError(UserError, RuntimeError):
    """The GPU backend was asked for but cannot be used."""


class DataError(UserError, ValueError):
    """A corpus file is missing, corrupted, empty or does not fit the request."""


class CheckpointError(UserError, ValueError):
    """A parameter or checkpoint file does not fit the model or is damaged."""


class ConfigError(UserError, ValueError):
    """A size, rate or option is outside what it may be."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on, e.g. the loss diverged again after lowering the learning rate."""

"""cupy.random on top of numpy.random: the same numbers, device-typed."""
import numpy as _np

from cupy import _wrap


class Generator:
    def __init__(self, seed=None):
        self._g = _np.random.default_rng(seed)

    def random(self, size=None, dtype=_np.float64, out=None):
        return _wrap(self._g.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=_np.float64):
        return _wrap(self._g.standard_normal(size, dtype=dtype))


def default_rng(seed=None):
    return Generator(seed)


def seed(value=None):
    _np.random.seed(value)


def rand(*shape, dtype=float):
    return _wrap(_np.random.rand(*shape).astype(dtype))


def randn(*shape, dtype=float):
    return _wrap(_np.random.randn(*shape).astype(dtype))

"""cupy.random on top of numpy.random: the same numbers, device-typed.

A :class:`Generator` draws during a stream capture: its state counts as device
memory (restored when the capture ends, advanced by every launch). The legacy
functions refuse a capture, as CuPy's do."""
import numpy as _np

from cupy import _graph, _wrap


class Generator:
    def __init__(self, seed=None):
        self._g = _np.random.default_rng(seed)

    def _draw(self, method, size, dtype, out):
        _graph.check_stream()
        _graph.save_generator(self._g)
        draw = lambda: _np.asarray(getattr(self._g, method)(size, dtype=dtype))    # noqa: E731
        result = _wrap(draw())
        if out is not None:
            out[...] = result
            result = out
        _graph.record(_graph.Node(draw, [result._a], ()))
        return result

    def random(self, size=None, dtype=_np.float64, out=None):
        return self._draw('random', size, dtype, out)

    def standard_normal(self, size=None, dtype=_np.float64, out=None):
        return self._draw('standard_normal', size, dtype, out)


def default_rng(seed=None):
    return Generator(seed)


def _legacy(name):
    _graph.refuse(f'cupy.random.{name} (the legacy random functions; draw from cupy.random.default_rng())')


def seed(value=None):
    _legacy('seed')
    _np.random.seed(value)


def rand(*shape, dtype=float):
    _legacy('rand')
    return _wrap(_np.random.rand(*shape).astype(dtype))


def randn(*shape, dtype=float):
    _legacy('randn')
    return _wrap(_np.random.randn(*shape).astype(dtype))


def random_sample(size=None, dtype=float):
    _legacy('random_sample')
    return _wrap(_np.random.random_sample(size).astype(dtype))

"""cupyx.scatter_add for the stand-in CuPy (a graph node during a capture)."""
import numpy as _np

from cupy import _launch, _unwrap


def scatter_add(a, slices, value):
    a, slices, value = _unwrap(a), _unwrap(slices, 'an index'), _unwrap(value)
    _launch(lambda: _np.add.at(a, slices, value))

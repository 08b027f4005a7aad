"""cupyx.scatter_add for the stand-in CuPy."""
import numpy as _np

from cupy import _unwrap


def scatter_add(a, slices, value):
    _np.add.at(_unwrap(a), _unwrap(slices, 'an index'), _unwrap(value))

"""The book's backend switch: ``from common.np import *`` gives ``np`` and ``GPU``.

``np`` is NumPy, or CuPy when :data:`common.config.GPU` is true at the first
import. The choice, and the few helpers whose NumPy and CuPy spellings differ
(transfers, scatter-add, the dropout generator), live in :mod:`common.backend`.
"""
from common.backend import GPU, np  # noqa: F401

__all__ = ['np', 'GPU']        # what the book's module gives a star import

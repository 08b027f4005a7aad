"""Finite differences, for checking gradients (float64 arrays of either backend)."""
import numpy


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every element of
    the array ``x`` (NumPy or CuPy), which is perturbed in place and restored.
    Returns a NumPy float64 array of ``x``'s shape."""
    grad = numpy.zeros(x.shape)
    for i in numpy.ndindex(*x.shape):
        old = float(x[i])
        x[i] = old + eps
        fp = float(f())
        x[i] = old - eps
        fm = float(f())
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad

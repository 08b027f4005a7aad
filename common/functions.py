"""Elementary functions, numerically stable, in the dtype of their input."""
from common.np import *  # noqa: F401,F403  (np: NumPy or CuPy)
from common.np import GPU  # noqa: F401  (the book's common.np hands on GPU as well)

__all__ = ['np', 'GPU', 'sigmoid', 'relu', 'softmax', 'log_softmax', 'cross_entropy_error']


def sigmoid(x, out=None):
    """σ(x) = 1 / (1 + e^-x), computed as (1 + tanh(x/2)) / 2.

    The tanh form never overflows (1 / (1 + e^-x) does for x < -88 in float32)
    and keeps the dtype of ``x``. ``out`` may be ``x`` itself.
    """
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def relu(x):
    """max(0, x) elementwise, in the dtype of ``x``."""
    return np.maximum(x, 0)


def softmax(x):
    """Softmax over the last axis: exp(x - max x) / Σ exp(x - max x)."""
    y = x - x.max(axis=-1, keepdims=True)
    np.exp(y, out=y)
    y /= y.sum(axis=-1, keepdims=True)
    return y


def log_softmax(x):
    """log softmax over the last axis: x - max x - log Σ exp(x - max x)."""
    y = x - x.max(axis=-1, keepdims=True)
    y -= np.log(np.exp(y).sum(axis=-1, keepdims=True))
    return y


def cross_entropy_error(y, t):
    """Mean over the batch of -log y[t].

    ``y``: probabilities (N, C) or (C,). ``t``: class ids (N,) or one-hot (N, C).
    1e-7 is added inside the log as in the book, so a probability of 0 gives
    a large finite loss instead of inf.
    """
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:  # one-hot labels -> ids
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    picked = y[np.arange(batch_size), t]
    return -np.sum(np.log(picked + 1e-7)) / batch_size


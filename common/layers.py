"""Layers that see one time step (or no time at all).

Every layer has ``params`` (a list of arrays), ``grads`` (arrays of the same
shapes, written in place by ``backward``), ``forward(...)`` and
``backward(dout)``; ``backward`` returns the gradient of its input.
"""
from common.np import *  # noqa: F401,F403
from common.np import GPU  # noqa: F401
from common import backend
from common.backend import matmul
from common.functions import cross_entropy_error, log_softmax, sigmoid, softmax  # noqa: F401

# What ``from common.layers import *`` gives, as the book's module does: np,
# GPU, the functions it imports, every layer.
__all__ = ['np', 'GPU', 'softmax', 'cross_entropy_error',
           'MatMul', 'Affine', 'Softmax', 'SoftmaxWithLoss', 'Sigmoid', 'SigmoidWithLoss', 'Dropout', 'Embedding',
           'dropout_mask']


class MatMul:
    """out = x W.   x: (N, D), W: (D, H) -> (N, H)."""

    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.x = None

    def forward(self, x):
        W, = self.params
        self.x = x
        return matmul(x, W)

    def backward(self, dout):
        W, = self.params
        matmul(self.x.T, dout, out=self.grads[0])
        return matmul(dout, W.T)


class Affine:
    """out = x W + b.   x: (N, D), W: (D, H), b: (H,) -> (N, H)."""

    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x = None

    def forward(self, x):
        W, b = self.params
        self.x = x
        out = matmul(x, W)
        out += b
        return out

    def backward(self, dout):
        W, b = self.params
        matmul(self.x.T, dout, out=self.grads[0])
        self.grads[1][...] = dout.sum(axis=0)
        return matmul(dout, W.T)


class Softmax:
    """y = softmax(x) over the last axis; dx = y ⊙ (dy - Σ y ⊙ dy)."""

    def __init__(self):
        self.params, self.grads = [], []
        self.out = None

    def forward(self, x):
        self.out = softmax(x)
        return self.out

    def backward(self, dout):
        dx = self.out * dout
        dx -= self.out * dx.sum(axis=-1, keepdims=True)
        return dx


class SoftmaxWithLoss:
    """loss = mean cross-entropy of softmax(x) against ids (or one-hot) t.

    x: (N, C), t: (N,) or (N, C). Backward: dx = (y - onehot(t)) / N.
    """

    def __init__(self):
        self.params, self.grads = [], []
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.t = t.argmax(axis=1) if t.size == x.size else t
        logp = log_softmax(x)                  # exact and stable, unlike log(y + 1e-7)
        self.y = np.exp(logp)
        return -logp[np.arange(len(self.t)), self.t].mean()

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        dx *= dout / batch_size
        return dx


class Sigmoid:
    """y = σ(x); dx = dy ⊙ y ⊙ (1 - y)."""

    def __init__(self):
        self.params, self.grads = [], []
        self.out = None

    def forward(self, x):
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class SigmoidWithLoss:
    """Mean binary cross-entropy of σ(x) against 0/1 labels t; dx = (σ(x) - t) / N."""

    def __init__(self):
        self.params, self.grads = [], []
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = sigmoid(x)
        # -[t log σ(x) + (1 - t) log σ(-x)], with log σ(x) = -log(1 + e^-x) = -logaddexp(0, -x)
        self.loss = np.mean(t * np.logaddexp(0, -x) + (1 - t) * np.logaddexp(0, x))
        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        return (self.y - self.t) * dout / batch_size


class Dropout:
    """The book's dropout (Srivastava et al. 2014), scaled at test time: in
    training out = x ⊙ m with m ~ Bernoulli(1 - p), 0 or 1; at test time
    out = x · (1 - p), the training output's expected value. dx = dout ⊙ m.
    (:class:`common.time_layers.TimeDropout` is the inverted form.)"""

    def __init__(self, dropout_ratio=0.5):
        self.params, self.grads = [], []
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = (backend.uniform(x.shape, x.dtype) >= self.dropout_ratio).astype(x.dtype)
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        return dout * self.mask


def dropout_mask(shape, ratio, dtype, rows=True):
    """A mask of 0 and 1 / (1 - ratio) in ``dtype``, drawn on the backend
    (``rows``: its first axis is the batch's rows, :func:`common.backend.uniform`)."""
    mask = (backend.uniform(shape, dtype, rows) >= ratio).astype(dtype)
    mask *= 1.0 / (1.0 - ratio)
    return mask


class Embedding:
    """out = W[idx].   idx: integer array of any shape -> idx.shape + (D,).

    Backward scatter-adds dout into the rows of dW, so repeated ids add up.
    With ``accumulate = True`` the gradient is added to what ``grads[0]``
    already holds (a tied weight whose other use wrote it first).
    """

    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.idx = None
        self.accumulate = False

    def forward(self, idx):
        W, = self.params
        self.idx = np.asarray(idx)
        return W[self.idx]

    def backward(self, dout):
        dW, = self.grads
        if not self.accumulate:
            dW[...] = 0
        backend.scatter_add(dW, self.idx.ravel(), dout.reshape(-1, dW.shape[1]))
        return None

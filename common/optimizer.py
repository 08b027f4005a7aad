"""Optimizers with the book's API: ``update(params, grads)`` changes every
parameter array in place (so tied views of a parameter stay tied)."""
from common.np import *  # noqa: F401,F403
from common import np as backend


class SGD:
    """p ← p − lr · g"""

    def __init__(self, lr=0.01):
        self.lr = lr
        self._scratch = None

    def update(self, params, grads):
        # lr · g goes through a small buffer, a cache-sized block at a time, so
        # each parameter is read and written once from memory (twice as fast
        # as p -= lr * g on the 6.5M-entry tied weight, and no allocation).
        # ``_scratch`` is a working buffer, not state: checkpoints leave out
        # attributes starting with '_'.
        for param, grad in zip(params, grads):
            if not (param.flags.c_contiguous and grad.flags.c_contiguous):
                param -= self.lr * grad        # a view: update it in place as it is
                continue
            p, g = param.reshape(-1), grad.reshape(-1)
            for block in backend.row_blocks(p.size, p.itemsize):
                n = block.stop - block.start
                if self._scratch is None or self._scratch.size < n or self._scratch.dtype != p.dtype:
                    self._scratch = np.empty(n, dtype=p.dtype)
                p[block] -= np.multiply(g[block], self.lr, out=self._scratch[:n])


class Momentum:
    """v ← momentum · v − lr · g;  p ← p + v"""

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = [np.zeros_like(p) for p in params]
        for param, grad, v in zip(params, grads, self.v):
            v *= self.momentum
            v -= self.lr * grad
            param += v


class AdaGrad:
    """h ← h + g²;  p ← p − lr · g / (√h + 1e-7)"""

    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = [np.zeros_like(p) for p in params]
        for param, grad, h in zip(params, grads, self.h):
            h += grad * grad
            param -= self.lr * grad / (np.sqrt(h) + 1e-7)


class Adam:
    """Adam (Kingma & Ba), with the bias correction folded into the step size:

    m ← m + (1 − β1)(g − m);  v ← v + (1 − β2)(g² − v)
    p ← p − lr · √(1 − β2^t) / (1 − β1^t) · m / (√v + 1e-7)
    """

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.iter += 1
        lr_t = self.lr * (1.0 - self.beta2 ** self.iter) ** 0.5 / (1.0 - self.beta1 ** self.iter)
        for param, grad, m, v in zip(params, grads, self.m, self.v):
            m += (1 - self.beta1) * (grad - m)
            v += (1 - self.beta2) * (grad * grad - v)
            param -= lr_t * m / (np.sqrt(v) + 1e-7)


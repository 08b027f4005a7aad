"""Optimizers with the book's API: ``update(params, grads)`` changes every
parameter array in place (so tied views of a parameter stay tied)."""
from common.np import *  # noqa: F401,F403


class SGD:
    """p ← p − lr · g"""

    def __init__(self, lr=0.01):
        self.lr = lr
        self.scratch = None

    def update(self, params, grads):
        # lr · g goes into buffers kept between calls: no fresh allocation (and
        # page faults) for the 6.5M-entry tied weight at every iteration.
        self.scratch = _scratch_like(self.scratch, grads)
        for param, grad, step in zip(params, grads, self.scratch):
            np.multiply(grad, self.lr, out=step)
            param -= step


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


def _scratch_like(buffers, arrays):
    """``buffers`` if they match ``arrays`` in shape and dtype, else new ones."""
    if buffers is None or len(buffers) != len(arrays) or any(
            b.shape != a.shape or b.dtype != a.dtype for b, a in zip(buffers, arrays)):
        return [np.empty_like(a) for a in arrays]
    return buffers

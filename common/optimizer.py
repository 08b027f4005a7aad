"""Optimizers with the book's API: ``update(params, grads)`` changes every
parameter array in place (so tied views of a parameter stay tied)."""
import contextlib

from common.np import *  # noqa: F401,F403
from common.np import GPU  # noqa: F401
from common import backend
from common import kernels

__all__ = ['np', 'GPU', 'SGD', 'Momentum', 'Nesterov', 'AdaGrad', 'RMSprop', 'Adam', 'ASGD']


class SGD:
    """p ← p − lr · g, or with ``weight_decay`` λ (L2, as torch.optim.SGD's):
    p ← p − lr · (g + λ · p).

    The update comes in two halves, so that a CUDA graph can hold the array
    work while the host keeps the numbers (common/cuda/graph.py):
    :meth:`scalars` gives this update's step size, :meth:`apply` changes the
    arrays with it, a Python float or a 0-d device array the graph reads.
    ``capturable`` says that :meth:`apply` keeps no Python state, ``baked``
    names the settings it reads as Python numbers (a graph holds their values)."""

    scalar_names = ('lr',)
    capturable = True
    baked = ('weight_decay',)       # read as Python numbers by apply(): a graph is keyed by them

    def __init__(self, lr=0.01, weight_decay=0.0):
        self.lr = lr
        self.weight_decay = weight_decay
        self._scratch = None

    def scalars(self):
        """This update's step size (what :meth:`apply` takes)."""
        return {'lr': self.lr}

    def update(self, params, grads):
        self.apply(params, grads, **self.scalars())

    def apply(self, params, grads, lr):
        # p − lr·(g + λp) = (1 − lr·λ)·p − lr·g
        shrink = 1.0 - lr * self.weight_decay if self.weight_decay else None
        if kernels.FUSED:       # CuPy: one kernel per parameter, strided views included
            for param, grad in zip(params, grads):
                if shrink is None:
                    kernels.sgd_step(grad, lr, param)
                else:
                    kernels.sgd_decay_step(grad, lr, shrink, param)
            return
        # lr · g goes through a small buffer, a cache-sized block at a time, so
        # each parameter is read and written once from memory (twice as fast
        # as p -= lr * g on the 6.5M-entry tied weight, and no allocation).
        # ``_scratch`` is a working buffer, not state: checkpoints leave out
        # attributes starting with '_'.
        for param, grad in zip(params, grads):
            if not (param.flags.c_contiguous and grad.flags.c_contiguous):
                if shrink is not None:
                    param *= shrink
                param -= lr * grad             # a view: update it in place as it is
                continue
            p, g = param.reshape(-1), grad.reshape(-1)
            for block in backend.row_blocks(p.size, p.itemsize):
                n = block.stop - block.start
                if self._scratch is None or self._scratch.size < n or self._scratch.dtype != p.dtype:
                    self._scratch = np.empty(n, dtype=p.dtype)
                if shrink is not None:
                    p[block] *= shrink
                p[block] -= np.multiply(g[block], lr, out=self._scratch[:n])


class Momentum:
    """v ← momentum · v − lr · g;  p ← p + v"""

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def _velocities(self, params):
        """v, one array like each parameter (zeros at the first update)."""
        if self.v is None:
            self.v = [np.zeros_like(p) for p in params]
        return self.v

    def update(self, params, grads):
        for param, grad, v in zip(params, grads, self._velocities(params)):
            v *= self.momentum
            v -= self.lr * grad
            param += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the book's form (Bengio et al. 2012,
    arXiv:1212.0901), the step taken from the look-ahead point:

    v ← momentum · v − lr · g;  p ← p + momentum² · v − (1 + momentum) · lr · g
    """

    def update(self, params, grads):
        for param, grad, v in zip(params, grads, self._velocities(params)):
            v *= self.momentum
            v -= self.lr * grad
            param += self.momentum * self.momentum * v
            param -= (1 + self.momentum) * self.lr * grad


class AdaGrad:
    """h ← h + g²;  p ← p − lr · g / (√h + 1e-7)"""

    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None

    def _squares(self, params):
        """h, one array like each parameter (zeros at the first update)."""
        if self.h is None:
            self.h = [np.zeros_like(p) for p in params]
        return self.h

    def update(self, params, grads):
        for param, grad, h in zip(params, grads, self._squares(params)):
            h += grad * grad
            param -= self.lr * grad / (np.sqrt(h) + 1e-7)


class RMSprop(AdaGrad):
    """AdaGrad with a decaying sum of squares (ρ = ``decay_rate``):

    h ← ρ · h + (1 − ρ) · g²;  p ← p − lr · g / (√h + 1e-7)
    """

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr)
        self.decay_rate = decay_rate

    def update(self, params, grads):
        for param, grad, h in zip(params, grads, self._squares(params)):
            h *= self.decay_rate
            h += (1 - self.decay_rate) * grad * grad
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

    scalar_names = ('lr',)
    capturable = True
    baked = ('beta1', 'beta2')

    def scalars(self):
        """This update's step size with the bias correction (the step count advances)."""
        self.iter += 1
        return {'lr': self.lr * (1.0 - self.beta2 ** self.iter) ** 0.5 / (1.0 - self.beta1 ** self.iter)}

    def update(self, params, grads):
        self.apply(params, grads, **self.scalars())

    def apply(self, params, grads, lr):
        """The arrays' half of the update (see :class:`SGD`)."""
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        lr_t = lr
        for param, grad, m, v in zip(params, grads, self.m, self.v):
            m += (1 - self.beta1) * (grad - m)
            v += (1 - self.beta2) * (grad * grad - v)
            param -= lr_t * m / (np.sqrt(v) + 1e-7)



class ASGD(SGD):
    """Non-monotonically triggered averaged SGD (NT-ASGD, Merity et al. 2017).

    Every update is SGD's, p ← p − lr · g (plus ``weight_decay``). The
    optimizer is told each validation loss L_k (:meth:`observe`, k = 1, 2,
    ...); averaging starts at the first check that is worse than the best of
    those more than ``nonmono`` checks before it (AWD-LSTM's rule):

        k > n + 1  and  L_k > min(L_1, ..., L_{k−n−1})    (n = nonmono)

    From then on, after every update m = 1, 2, ...:

        a ← p (m = 1);   a ← a + (p − a) / m             a = mean of p over the m updates

    which is ``torch.optim.ASGD(lambd=0, t0=-1)`` (AWD-LSTM's t0=0 leaves
    out the first update after the trigger). The average is what a run
    validates, saves and tests (:meth:`averaged`); training goes on from p.
    ``nonmono = 0`` never averages (plain SGD).

    ``restarts`` > 0 adds AWD-LSTM's fine-tuning stage (its finetune.py) up
    to that many times: once averaging runs, the same rule is applied to the
    checks of the average since it began; when it fires, the weights are set
    to the average, p ← a, and a new average starts from there (m = 1 at the
    next update). :meth:`observe` then returns 'restart' and the caller
    calls :meth:`restart`.

    A run calls :meth:`schedule` once per epoch instead: the rule above, a
    start once a fraction ``latest`` of the training budget is spent
    (``--asgd-latest``), and the restart, in one call.

    ``avg`` (list of arrays like the parameters, None before the trigger),
    ``avg_count``, ``averaging``, ``checks``, ``phase_start`` (index in
    ``checks`` of the current average's first check) and ``restarted`` are
    the state a checkpoint saves.
    """

    def __init__(self, lr=0.01, nonmono=5, weight_decay=0.0, restarts=0):
        super().__init__(lr, weight_decay)
        self.nonmono = nonmono
        self.restarts = restarts
        self.checks = []
        self.averaging = False
        self.avg = None
        self.avg_count = 0
        self.phase_start = 0
        self.restarted = 0

    def observe(self, valid_loss):
        """Record a validation check. Returns 'start' when it starts
        averaging, 'restart' when the average stalled and a restart is due
        (call :meth:`restart`), else None."""
        n, checks = self.nonmono, self.checks
        phase = checks[self.phase_start:]
        fired = n > 0 and len(phase) > n and valid_loss > min(phase[:-n])
        checks.append(float(valid_loss))
        if fired and not self.averaging:
            self.start()
            return 'start'
        if fired and self.avg is not None and self.restarted < self.restarts:
            return 'restart'
        return None

    def schedule(self, valid_loss, params, spent=0.0, latest=0.0):
        """The epoch-end step of a run: record ``valid_loss`` (:meth:`observe`)
        and act on it. Returns 'start' when the non-monotone rule started
        averaging; 'latest' when, the rule silent, averaging starts because
        the fraction ``spent`` of the training budget reached ``latest`` (0:
        never; on K processes rank 0's fraction, so that every rank agrees);
        'restart' when the average stalled and ``params`` were set to it
        (:meth:`restart`); else None."""
        event = self.observe(valid_loss)
        if event is None and not self.averaging and latest and spent >= latest:
            self.start()
            return 'latest'
        if event == 'restart':
            self.restart(params)
        return event

    def start(self):
        """Average from the next update on (the trigger, or a caller's own rule)."""
        self.averaging = True
        self.phase_start = len(self.checks)     # the checks of the average come next

    def restart(self, params):
        """Fine-tuning: p ← a, and average anew from the next update."""
        for p, a in zip(params, self.avg):
            p[...] = a
        self.avg_count = 0
        self.restarted += 1
        self.phase_start = len(self.checks)

    @property
    def capturable(self):
        """Capturable until averaging starts: the average's count is a Python number."""
        return not self.averaging

    def update(self, params, grads):
        super().update(params, grads)
        if not self.averaging:
            return
        self.avg_count += 1
        if self.avg is None or self.avg_count == 1:
            self.avg = [p.copy() for p in params]
            return
        rate = 1.0 / self.avg_count
        for a, p in zip(self.avg, params):
            a += (p - a) * rate

    @contextlib.contextmanager
    def averaged(self, params):
        """Inside, ``params`` (the list :meth:`update` gets) hold the averaged
        weights; afterwards their own values again, bit for bit. Before the
        trigger, nothing changes."""
        if self.avg is None:
            yield
            return
        saved = [p.copy() for p in params]
        for p, a in zip(params, self.avg):
            p[...] = a
        try:
            yield
        finally:
            for p, s in zip(params, saved):
                p[...] = s

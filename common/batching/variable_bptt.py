"""Variable-length truncated BPTT (Merity et al. 2017, section 4.1).

With a fixed window of T tokens the same positions of the corpus always
start a window, so some words never get a long history and the model wastes
the start of every window. AWD-LSTM draws each iteration's length:

    T' = T with probability 0.95, T / 2 otherwise
    L  = max(5, ⌊N(T', σ = 5)⌋)                   (at least min(5, T))

and scales the learning rate by L / T for that update, so that short and long
windows move the weights alike per token.
"""
import numpy

from common.np import *  # noqa: F401,F403
from common.trainer import RnnlmTrainer
from common.util import window_indices


def window_lengths(rng, count, time_size, sigma=5.0):
    """``count`` window lengths drawn as above from ``rng`` (a NumPy Generator)."""
    base = numpy.where(rng.random(count) < 0.95, time_size, time_size / 2)
    lengths = numpy.floor(rng.normal(base, sigma)).astype(numpy.int64)
    return numpy.maximum(lengths, min(5, time_size))


class VariableBpttTrainer(RnnlmTrainer):
    """:class:`RnnlmTrainer` with a window length drawn per iteration.

    The book's batching is kept: row i starts at offset
    ``i * (len(xs) // batch_size)`` and all rows advance together, now by
    each iteration's length L (:func:`window_lengths`, mean ≈ 0.975 T). An
    epoch has the book's number of iterations, len(xs) // (batch_size · T).
    The lengths of epoch e come from a generator seeded with (``seed``, e),
    so a run resumed in the middle of an epoch finds the same windows.
    The learning rate is ``lr · L / T`` during the update of that window
    (:meth:`update`) and ``lr`` again as soon as it is done; between calls
    ``optimizer.lr`` is the run's.
    """

    def __init__(self, model, optimizer, parts=None, grad_steps=(), seed=0, cuda_graph=None):
        super().__init__(model, optimizer, parts, grad_steps, cuda_graph)
        self.seed = seed
        self.lengths = self.starts = self.bptt = None

    def begin_epoch(self, first, start_loss):
        rng = numpy.random.default_rng([self.seed, self.current_epoch])
        self.lengths = window_lengths(rng, self.max_iters, self.bptt)
        self.starts = numpy.concatenate([[0], numpy.cumsum(self.lengths)[:-1]])
        super().begin_epoch(first, start_loss)

    def fit(self, xs, ts, max_epoch=10, batch_size=20, time_size=35, max_grad=None, eval_interval=20):
        self.bptt = time_size
        super().fit(xs, ts, max_epoch, batch_size, time_size, max_grad, eval_interval)

    def get_batch(self, x, t, batch_size, time_size):
        """(batch_size, L) inputs and targets of this iteration's window (the ``rows`` of them: a
        data-parallel rank's block)."""
        length, start = int(self.lengths[self.iteration]), int(self.starts[self.iteration])
        data_size = len(x)
        offsets = np.arange(batch_size)[self.rows] * (data_size // batch_size)
        idx = window_indices(offsets, start, length, data_size)
        return x[idx], t[idx]

    def update(self):
        """The update of this iteration's window with the learning rate scaled by L / T."""
        optimizer, base_lr = self.optimizer, self.optimizer.lr
        optimizer.lr = base_lr * int(self.lengths[self.iteration]) / self.bptt
        try:
            super().update()
        finally:
            optimizer.lr = base_lr

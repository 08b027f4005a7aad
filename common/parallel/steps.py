"""Data-parallel training: what a run on K processes adds to the book's loop.

Every rank holds the whole model and trains its own contiguous block of the
global batch's rows (``--batch-size`` rows in all, ``batch_size / K`` each;
in the book's batching each row is its own stream through the corpus, so a
rank owns its rows' hidden states too). Per iteration:

* dropout masks are drawn for the global batch from a generator that is the
  same on every rank, and each rank takes its rows (:func:`common.backend.share_rows`),
  so K ranks apply the masks one process would;
* :class:`AllReduceGrads`, a gradient step: the gradients, packed into one
  flat buffer (:class:`GradBucket`), are averaged with one all-reduce; it
  runs before clipping, so clipping sees the global norm, and every rank
  applies the same update to the same parameters;
* :class:`AverageLoss`: the reported losses are the global batch's mean;
* :class:`FollowRoot`: rank 0's decision to stop (Ctrl-C, time budget:
  parts on rank 0 alone) holds for every rank, at the same iteration.

Evaluation splits the evaluation batch's rows the same way and averages the
loss (:func:`eval_perplexity_ranks`). How the communicator moves the data:
:mod:`common.parallel.communicator`; the design and its cost: docs/distributed.md.
"""
import math

from common import backend
from common.errors import ConfigError
from common.run.parts import Part
from common.util import eval_loss


class GradBucket:
    """One flat buffer holding every gradient, so a reduction is one call
    (PyTorch DDP's bucket, here a single one): :meth:`pack` copies the
    gradients in, :meth:`unpack` copies the buffer back into them."""

    def __init__(self, grads):
        dtypes = {str(g.dtype) for g in grads}
        if len(dtypes) != 1:
            raise TypeError(f'one flat buffer needs one dtype, got the gradients in {sorted(dtypes)}')
        self.bounds, start = [], 0
        for g in grads:
            self.bounds.append((start, start + g.size))
            start += g.size
        self.flat = backend.np.empty(start, dtype=grads[0].dtype)

    def pack(self, grads):
        for g, (lo, hi) in zip(grads, self.bounds):
            self.flat[lo:hi] = g.ravel()
        return self.flat

    def unpack(self, grads):
        for g, (lo, hi) in zip(grads, self.bounds):
            g[...] = self.flat[lo:hi].reshape(g.shape)


class AllReduceGrads:
    """Gradient step: average the gradients over the ranks, one all-reduce of one buffer."""

    def __init__(self, comm):
        self.comm, self.bucket = comm, None

    def __call__(self, trainer):
        grads = trainer.model.grads
        if self.bucket is None:
            self.bucket = GradBucket(grads)
        self.comm.allreduce_mean_(self.bucket.pack(grads))
        self.bucket.unpack(grads)


class AverageLoss(Part):
    """The losses a report and an epoch read are the global batch's: the mean
    of the ranks' (each the mean over its equal block of rows). First among
    the parts, so the divergence watch judges the global loss."""

    def __init__(self, comm):
        self.comm = comm

    def report(self, trainer):
        trainer.window = self.comm.mean(trainer.window)

    def epoch_end(self, trainer):
        trainer.epoch_loss = self.comm.mean(trainer.epoch_total)


class FollowRoot(Part):
    """Last among the parts: every rank stops when, and as, rank 0 stops.
    Rank 0's Ctrl-C or its clock decides (the ranks' clocks differ): the
    time budget and the Ctrl-C part are wired on rank 0 alone, and this
    part hands rank 0's stop to :meth:`RnnlmTrainer.stop` on every rank."""

    def __init__(self, comm):
        self.comm = comm

    def iteration(self, trainer):
        root = self.comm.bcast(trainer.stopped)
        if root is not None:
            trainer.stop(root.reason, root.at)


def split_rows(comm, trainer, batch_size, eval_batch_size, sentences=False):
    """Give ``trainer`` and the dropout masks this rank's block of rows; one
    line for a batch size the ranks cannot share. In sentence mode a block of
    every group (:meth:`SentenceTrainer.share`); evaluation is not split there."""
    if comm.size == 1:
        return
    if sentences:
        trainer.share(comm.rank, comm.size)
        return
    comm.rows(eval_batch_size, '--eval-batch-size')
    trainer.rows = comm.rows(batch_size)
    backend.share_rows(trainer.rows, batch_size)


def eval_perplexity_ranks(comm, model, corpus, batch_size=10, time_size=35):
    """:func:`common.util.eval_perplexity` over the ranks: each reads its
    block of the ``batch_size`` rows; exp of the mean of their losses."""
    total, windows = eval_loss(model, corpus, batch_size, time_size, rows=comm.rows(batch_size, '--eval-batch-size'))
    return float(math.exp(comm.mean(total) / windows))

"""Sentence mode: many short sequences, batched so that none leaks into another.

A sentence corpus is one id array of sequences ``<bos> w1 … wn <eos>`` one
after the other. Training pairs are (xs[i], ts[i] = the next token), as
everywhere; the pairs ``(<eos>, <bos>)`` between sequences are dropped, so a
sequence of n tokens gives n + 1 pairs: ``<bos>`` predicts w1, …, wn predicts
``<eos>``.

Batches: the sequences are sorted by length (bucketing: little padding) and
cut into groups of ``batch_size``; each epoch visits the groups in a new
random order (``numpy.random``, seeded by ``--seed``). A group is padded to
its longest sequence and read in windows of ``time_size`` steps; the model's
recurrent state carries from one window to the next inside the group (BPTT
truncated at window ends, as for continuous text) and is reset before every
group, so no state crosses from one sequence to another. Padded positions
read a valid id (the sequence's ``<bos>``) and have the target
``ignore_label = -1``: the loss and the gradients do not see them.

On K processes (``mpiexec -n K``, :meth:`SentenceTrainer.share`) each rank
trains a block of every group's rows, as for continuous text. A group need
not split into equal blocks, and its blocks hold different numbers of real
tokens, so each rank weights its loss and gradients by its share of the
window's tokens, ``K · n_rank / n``: the mean over the ranks is then the
mean over all the window's tokens, what one process computes.
"""
import math

import numpy

from common.np import *  # noqa: F401,F403
from common import backend
from common.errors import DataError
from common.run.progress import progress
from common.trainer import RnnlmTrainer

IGNORE = -1


class SentenceBatches:
    """The grouping of the sequences found in the host arrays (xs, ts).

    ``starts[k]``, ``lengths[k]``: where the pairs of sequence k begin in xs
    and how many there are. ``groups``: arrays of sequence numbers, sorted by
    length, ``batch_size`` per group (the last may be smaller).
    """

    def __init__(self, xs, ts, bos_id, batch_size):
        xs, ts = numpy.asarray(xs), numpy.asarray(ts)
        starts = numpy.flatnonzero(xs == bos_id)
        if len(starts) == 0 or starts[0] != 0:
            raise DataError(f"a sentence-mode corpus must be sequences that each start with <bos> "
                            f"(id {bos_id}): build it with CharVocab.encode_lines")
        ends = numpy.append(starts[1:] - 1, len(xs))    # drop the (<eos>, <bos>) pair between sequences
        self.starts = starts
        self.lengths = ends - starts
        if (self.lengths < 1).any():
            raise DataError('a sentence-mode corpus has an empty sequence: encode lines with encode_lines')
        order = numpy.argsort(self.lengths, kind='stable')
        self.groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    def windows(self, group, time_size):
        """(positions, valid) host arrays per window of one group:
        positions (B, T') index xs/ts, valid (B, T') marks real pairs."""
        starts, lengths = self.starts[group], self.lengths[group]
        longest = int(lengths.max())
        for first in range(0, longest, time_size):
            steps = first + numpy.arange(min(time_size, longest - first))
            valid = steps[None, :] < lengths[:, None]
            positions = numpy.where(valid, starts[:, None] + steps[None, :], starts[:, None])
            yield positions, valid

    def window_count(self, time_size):
        return sum(math.ceil(int(self.lengths[g].max()) / time_size) for g in self.groups)


def gather(xs, ts, positions, valid):
    """Backend (inputs, targets) of one window: padding reads a real id and
    has the target IGNORE."""
    positions, valid = backend.asarray(positions), backend.asarray(valid)
    return xs[positions], np.where(valid, ts[positions], IGNORE)


class SentenceTrainer(RnnlmTrainer):
    """:class:`RnnlmTrainer` with sentence-mode batches (see the module text).

    ``fit(xs, ts, ...)`` takes the pairs of a sentence corpus, e.g.
    ``corpus[:-1], corpus[1:]``. One iteration is one window of one group;
    the reported loss is the mean over the windows (each the mean over its
    real tokens), tokens/s counts batch_size × time_size per window.
    """

    sentence_mode = True    # a corpus needs one sentence, not batch_size x time_size tokens

    def __init__(self, model, optimizer, bos_id):
        super().__init__(model, optimizer)
        self.bos_id = bos_id
        self.batches = None
        self._windows = iter(())
        self.ranks = None        # (rank, K) on K processes: this rank's block of each group's rows
        self.token_share = 1.0   # K · (this rank's real tokens) / (the window's), 1 in one process

    def share(self, rank, size):
        """Train ``rank``'s block of every group's rows, of ``size`` ranks; the
        gradients are weighted by the block's share of the tokens before they
        are averaged (a gradient step, the first)."""
        self.ranks = (rank, size)
        self.grad_steps.insert(0, scale_by_token_share)

    def add_loss(self, loss):
        super().add_loss(loss * self.token_share if self.ranks else loss)

    def epoch_iters(self, xs, ts, batch_size, time_size):
        self.batches = SentenceBatches(xs, ts, self.bos_id, batch_size)
        self._windows = iter(())
        return self.batches.window_count(time_size)

    def _epoch_windows(self, time_size):
        """Every window of one epoch, groups in a random order; the model's
        state is reset before each group's first window."""
        for g in numpy.random.permutation(len(self.batches.groups)):
            group = self.batches.groups[g]
            for i, window in enumerate(self.batches.windows(group, time_size)):
                if i == 0:
                    self.model.reset_state()
                yield window

    def get_batch(self, xs, ts, batch_size, time_size):
        window = next(self._windows, None)
        if window is None:                   # a new epoch
            self._windows = self._epoch_windows(time_size)
            window = next(self._windows)
        if self.ranks:
            window = self._rank_block(*window)
        return gather(xs, ts, *window)

    def _rank_block(self, positions, valid):
        """This rank's rows of a window (maybe none, when a group has fewer
        rows than there are ranks); the dropout masks and the token share follow."""
        rank, size = self.ranks
        rows = block(len(valid), rank, size)
        backend.share_rows(rows, len(valid))
        self.token_share = size * int(valid[rows].sum()) / int(valid.sum())
        return positions[rows], valid[rows]


def block(n, rank, size):
    """Rank ``rank``'s contiguous block of ``n`` rows cut as evenly as ``size``
    ranks allow (the blocks differ by at most one row; some may be empty)."""
    return slice(rank * n // size, (rank + 1) * n // size)


def scale_by_token_share(trainer):
    """Gradient step: weight this rank's gradients by its share of the tokens."""
    if trainer.token_share != 1.0:
        for g in trainer.model.grads:
            g *= trainer.token_share


def eval_sentences(model, corpus, bos_id, batch_size=10, time_size=35):
    """exp(mean cross-entropy per predicted token) of ``model`` on a sentence
    corpus (1-D ids), batched as in training but in a fixed order; every
    token counts once, padding not at all. Dropout is off."""
    corpus = numpy.asarray(corpus)
    xs, ts = corpus[:-1], corpus[1:]
    batches = SentenceBatches(xs, ts, bos_id, batch_size)
    dxs, dts = backend.asarray(xs), backend.asarray(ts)
    total_loss, total_count = 0, 0
    for group in progress(batches.groups, total=len(batches.groups), desc='eval', unit='batch'):
        model.reset_state()
        for positions, valid in batches.windows(group, time_size):
            x, t = gather(dxs, dts, positions, valid)
            count = int(valid.sum())
            total_loss += model.forward(x, t, train_flg=False) * count
            total_count += count
    model.reset_state()
    return float(numpy.exp(float(total_loss) / total_count))

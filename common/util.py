"""Training utilities with the book's names and signatures."""
import inspect

import numpy

from common.np import *  # noqa: F401,F403
from common import backend
from common.errors import DataError
from common.run.progress import progress


def to_cpu(x):
    """A NumPy copy of ``x`` (returned as is when it already is one)."""
    return backend.asnumpy(x)


def to_gpu(x):
    """``x`` on the active backend: a CuPy array when config.GPU is on."""
    return backend.asarray(x)


def window_indices(offsets, start, time_size, size):
    """Indices of the book's truncated-BPTT windows, all rows at once.

    Row i reads ``time_size`` consecutive positions from ``offsets[i] + start``,
    wrapping around a corpus of ``size``: (len(offsets), time_size) indices.
    """
    return (offsets[:, None] + (start + np.arange(time_size))[None, :]) % size


def clip_grads(grads, max_norm):
    """Scale all gradients in place so that their joint L2 norm is at most
    ``max_norm``; returns the norm before clipping (a backend scalar).

    ‖g‖ = √Σ_i ⟨g_i, g_i⟩, each term one BLAS dot product (no g² temporaries).
    The scale min(1, max_norm / (‖g‖ + 1e-6)) is applied unconditionally so
    the norm never has to be read back to the host (no GPU synchronisation).
    """
    total = sum(np.vdot(g.ravel(), g.ravel()) for g in grads)
    norm = np.sqrt(total)
    rate = np.minimum(max_norm / (norm + 1e-6), 1.0)
    for g in grads:
        g *= rate
    return norm


def eval_perplexity(model, corpus, batch_size=10, time_size=35):
    """exp(mean cross-entropy) of ``model`` on ``corpus`` (1-D ids), read with
    the book's batching: row i starts at i · ((len − 1) // batch_size) and the
    rows advance together ``time_size`` tokens per step. Dropout is off.
    The model's stateful layers carry state across the windows; call
    ``model.reset_state()`` before if it should start fresh.
    """
    total_loss, windows = eval_loss(model, corpus, batch_size, time_size)
    return float(numpy.exp(total_loss / windows))


def eval_loss(model, corpus, batch_size=10, time_size=35, rows=slice(None)):
    """``(summed loss, windows)`` of :func:`eval_perplexity`'s pass, reading
    only the batch's ``rows`` (a data-parallel rank's block; all by default)."""
    corpus = backend.asarray(corpus)
    corpus_size = len(corpus)
    max_iters = (corpus_size - 1) // (batch_size * time_size)
    if max_iters < 1:
        raise DataError(f"corpus of {corpus_size} tokens is too short to evaluate with batch_size={batch_size} "
                        f"and time_size={time_size}: it needs at least {batch_size * time_size + 1} tokens")
    jump = (corpus_size - 1) // batch_size
    offsets = np.arange(batch_size)[rows] * jump
    # Models without dropout (the book's SimpleRnnlm) take no train_flg.
    eval_kwargs = {'train_flg': False} if 'train_flg' in inspect.signature(model.forward).parameters else {}
    total_loss = 0
    for iters in progress(range(max_iters), total=max_iters, desc='eval', unit='batch'):
        idx = window_indices(offsets, iters * time_size, time_size, corpus_size)
        xs = corpus[idx]
        ts = corpus[(idx + 1) % corpus_size]
        loss = model.forward(xs, ts, **eval_kwargs)
        total_loss += loss
    return float(total_loss), max_iters

"""The book's two training loops: ``Trainer`` (mini-batches of independent
samples, chapters 1-4 and 7-8) and ``RnnlmTrainer`` (truncated BPTT over one
long corpus, chapters 5-6), and ``remove_duplicate``.

``fit`` is the book's loop: batch, forward, backward, the gradient steps,
update, the after-iteration steps, and a report line every ``eval_interval``
iterations. What a real run needs beyond it (progress bar, divergence watch,
time budget, Ctrl-C, validation inside an epoch, ...) are small parts in
:mod:`common.run.parts`, called at a few named events; docs/architecture.md says
where each step lives and where a new part plugs in.
"""
import math
import time

import numpy

from common.np import *  # noqa: F401,F403
from common import backend
from common.cuda.graph import TrainGraphs, graphs_apply
from common.errors import DataError
from common.run.parts import DivergenceWatch, ProgressBar, Stop
from common.run.progress import describe_ppl, write
from common.tying import address, find_shared, merge_shared_params
from common.util import clip_grads, window_indices


class ClipGrads:
    """Gradient step: scale the gradients to a global norm of at most
    ``max_norm``; the norm (a backend scalar) is ``trainer.norm``, and the
    norms add up in ``trainer.norm_sum`` after each step. It reads nothing on
    the host, so a CUDA graph can hold it (``capturable``)."""

    capturable = True

    def __init__(self, max_norm):
        self.max_norm = max_norm

    def __call__(self, trainer):
        trainer.norm = clip_grads(trainer.model.grads, self.max_norm)


class BaseTrainer:
    """What both trainers share: the events their parts see
    (:mod:`common.run.parts`), the one way to end training early, the sums of
    the losses, the plot of the reports."""

    parts = ()
    stopped = None

    def emit(self, event):
        for part in self.parts:
            getattr(part, event)(self)

    def stop(self, reason, at=None):
        """End ``fit`` after this iteration, ``at`` iterations into the epoch
        (default: those done, counting the ``start`` ones). The first reason
        given wins, with one exception: ``'diverged'`` replaces an earlier stop
        for any other reason. A Ctrl-C ('interrupt') or time-budget ('time')
        stop whose epoch then turns out to have diverged (the divergence watch
        looks once more at the epoch's end) is a divergence: the run goes back
        to its last good state instead of keeping or saving this one."""
        if self.stopped is None or (reason == 'diverged' and self.stopped.reason != 'diverged'):
            self.stopped = Stop(reason, self.first + self.done if at is None else at)

    def add_loss(self, loss):
        self.loss = loss
        self.window_loss += loss
        self.epoch_loss += loss
        self.window_count += 1
        self.done += 1

    def plot_reports(self, values, ylabel, path=None, ylim=None):
        """Plot the reported ``values``. With ``path`` write a PNG there (works
        without a display) and return the path; without it show the figure."""
        from common.run.plotting import line_plot     # matplotlib only when a plot is asked for
        x = numpy.arange(len(values))
        xlabel = 'iterations (x' + str(self.eval_interval) + ')'
        return line_plot({'train': (x, values)}, xlabel, ylabel, path=path, ylim=ylim)


class Trainer(BaseTrainer):
    """Train a model on mini-batches of independent samples (the book's
    ``Trainer``: chapters 1-4 and the seq2seq models of chapters 7-8).

    Every epoch draws a new order of the rows of (x, t) with
    ``numpy.random.permutation`` (NumPy's global generator, as in the book, so
    ``np.random.seed`` fixes a run; the orders compose over the epochs of one
    ``fit`` as the book's reshuffled copies do) and cuts it into
    ``len(x) // batch_size`` batches; the rows left over wait for another
    order. Each iteration: forward, backward, :func:`remove_duplicate`,
    clipping to ``max_grad``, update. Every ``eval_interval`` iterations (the
    first of each epoch included) the mean loss since the last report is
    printed and appended to ``loss_list``, which grows over every ``fit``.

    ``parts``: as for :class:`RnnlmTrainer`; by default a progress bar and the
    divergence watch.
    """

    def __init__(self, model, optimizer, parts=None):
        self.model, self.optimizer = model, optimizer
        self.parts = [ProgressBar(), DivergenceWatch()] if parts is None else list(parts)
        self.loss_list = []
        self.eval_interval = None
        self.current_epoch = 0
        self.first = self.done = 0

    def fit(self, x, t, max_epoch=10, batch_size=32, max_grad=None, eval_interval=20):
        """``max_epoch`` passes over the samples x[i] -> t[i] (arrays with the
        samples along the first axis). Prints
        ``| epoch 1 | iter 1 / 351 | time 0[s] | loss 2.56``."""
        data_size = len(x)
        self.max_iters = self.epoch_iters(data_size, batch_size)
        self.eval_interval, self.stopped = eval_interval, None
        x, t = backend.asarray(x), backend.asarray(t)       # one host-to-device copy per fit
        model, optimizer = self.model, self.optimizer
        self.window_loss, self.window_count = 0, 0          # as in the book, a window may span two epochs
        self.start_time = time.time()
        order = numpy.arange(data_size)

        for _ in range(max_epoch):
            order = order[numpy.random.permutation(numpy.arange(data_size))]
            rows = backend.asarray(order)
            self.begin_epoch()
            for self.iteration in range(self.max_iters):
                batch = rows[self.iteration * batch_size:(self.iteration + 1) * batch_size]
                loss = model.forward(x[batch], t[batch])
                model.backward()
                params, grads = remove_duplicate(model.params, model.grads)
                if max_grad is not None:
                    self.norm_sum += clip_grads(grads, max_grad)
                optimizer.update(params, grads)
                self.add_loss(loss)
                if eval_interval and self.iteration % eval_interval == 0:
                    self.report()
                self.emit('iteration')
                if self.stopped:
                    break
            self.emit('epoch_end')
            if self.stopped:
                break
            self.current_epoch += 1

    @staticmethod
    def epoch_iters(data_size, batch_size):
        if data_size < batch_size:
            raise DataError(f"{data_size} samples are fewer than one batch of batch_size={batch_size}: "
                            f"use a smaller batch_size or more samples")
        return data_size // batch_size

    def begin_epoch(self):
        self.done, self.epoch_loss, self.norm_sum = 0, 0, 0
        self.emit('epoch_start')

    @property
    def epoch_total(self):
        """The epoch's summed loss as a float (one host read)."""
        return float(self.epoch_loss)

    def report(self):
        """The book's report line; parts' ``report`` first (one host read of the window's loss)."""
        self.window = float(self.window_loss)
        self.emit('report')
        if self.stopped:
            return
        avg_loss = self.window / self.window_count
        elapsed = time.time() - self.start_time
        write('| epoch %d | iter %d / %d | time %d[s] | loss %.2f'
              % (self.current_epoch + 1, self.iteration + 1, self.max_iters, elapsed, avg_loss))
        self.loss_list.append(float(avg_loss))
        self.window_loss, self.window_count = 0, 0

    def plot(self, ylim=None, path=None):
        """Plot ``loss_list`` (see :meth:`BaseTrainer.plot_reports`)."""
        return self.plot_reports(self.loss_list, 'loss', path, ylim)


class RnnlmTrainer(BaseTrainer):
    """Train a language model with truncated backpropagation through time.

    Batching follows the book: row i of every batch starts at offset
    ``i * (len(xs) // batch_size)`` and all rows advance together,
    ``time_size`` tokens per iteration, so the stateful layers see each row
    as one continuous stream. ``fit`` starts at the beginning of the corpus
    (time index 0), like the book's, or at iteration k of the first epoch
    after ``start = (k, summed loss of those k)`` (a resumed run).

    After ``fit``: ``ppl_list`` holds the perplexity of every report window,
    ``epoch_ppl`` the training perplexity of the last epoch, and
    ``tokens_per_sec`` its throughput; ``stopped`` is None or a :data:`Stop`.
    ``total_iters`` and ``train_seconds`` count all iterations and the
    seconds spent in them (the parts' time not included), over every ``fit``.

    ``grad_steps``: callables ``step(trainer)`` run between backward and
    update, before clipping (an all-reduce of data-parallel gradients goes
    here). ``parts``: objects with any of the methods of
    :class:`common.run.parts.Part`, called at its events. By default a progress
    bar and the divergence watch. Subclasses change the batching by
    overriding :meth:`epoch_iters` and :meth:`get_batch`
    (see :class:`common.batching.sentences.SentenceTrainer`).

    ``cuda_graph``: on CuPy, run each step (forward, backward, gradient
    steps, update) as one CUDA graph (:mod:`common.cuda.graph`); None
    follows ``config.CUDA_GRAPH`` (on by default), False keeps every launch
    in Python. ``graphs`` is then the :class:`~common.cuda.graph.TrainGraphs`.
    """

    def __init__(self, model, optimizer, parts=None, grad_steps=(), cuda_graph=None):
        self.model, self.optimizer = model, optimizer
        self.parts = [ProgressBar(), DivergenceWatch()] if parts is None else list(parts)
        self.grad_steps = list(grad_steps)
        self.graphs = self.norm = None
        if graphs_apply(cuda_graph):
            self.graphs = TrainGraphs()       # CuPy: each step one CUDA graph
        self.time_idx = self.ppl_list = self.eval_interval = self.stopped = None
        self.current_epoch, self.start, self.unit = 0, (0, 0.0), 'word'
        self.epoch_ppl = self.tokens_per_sec = None
        self.total_iters, self.train_seconds, self.last_step_seconds = 0, 0.0, 0.0
        self.rows = slice(None)      # the rows of each batch this process trains (data-parallel: its block)

    def fit(self, xs, ts, max_epoch=10, batch_size=20, time_size=35, max_grad=None, eval_interval=20):
        """Train for ``max_epoch`` passes over (xs, ts), 1-D id arrays with
        ts[i] the token after xs[i]. After the ``grad_steps``, clips the
        global gradient norm to ``max_grad`` when given. Every
        ``eval_interval`` iterations prints
        ``| epoch 1 | iter 21 / 1327 | time 12[s] | perplexity 812.33 | 1234 tok/s``.
        A part ends training early with :meth:`stop`."""
        self.max_iters = self.epoch_iters(xs, ts, batch_size, time_size)
        merge_shared_params(self.model)      # a weight the book's models list twice (W, W.T): once
        xs, ts = backend.asarray(xs), backend.asarray(ts)   # one host-to-device copy per fit
        self.tokens, self.eval_interval, self.ppl_list = batch_size * time_size, eval_interval, []
        self.start_time, self.stopped = time.time(), None
        (first, start_loss), self.start = self.start, (0, 0.0)
        self.time_idx = first * time_size
        grad_steps = self.grad_steps + ([ClipGrads(max_grad)] if max_grad is not None else [])

        for _ in range(max_epoch):
            self.begin_epoch(first, start_loss)
            for self.iteration in range(first, self.max_iters):
                step_start = time.perf_counter()
                batch_x, batch_t = self.get_batch(xs, ts, batch_size, time_size)
                loss = self.train_step(batch_x, batch_t, grad_steps)
                self.add_loss(loss)
                if eval_interval and self.iteration % eval_interval == 0:
                    self.report(step_start)
                self.count_time(step_start)
                self.emit('iteration')
                if self.stopped:
                    break
            self.end_epoch()
            if self.stopped:
                break
            first, start_loss = 0, 0.0

    def begin_epoch(self, first, start_loss):
        """Zero the epoch's sums (the first ``first`` iterations, done before,
        summed to ``start_loss``); parts' ``epoch_start``."""
        # Losses and gradient norms stay backend scalars until a report reads
        # them: on the GPU the loop never waits for the device. Both are >= 0,
        # so a sum is finite exactly when every term is.
        self.window_loss, self.window_count, self.norm_sum = 0, 0, 0
        self.done, self.epoch_seconds, self.first, self.epoch_loss = 0, 0.0, first, start_loss
        self.emit('epoch_start')

    def train_step(self, batch_x, batch_t, grad_steps):
        """Forward, backward, the gradient steps and the update of one batch;
        returns its loss. On CuPy one CUDA graph does it all
        (:class:`common.cuda.graph.TrainGraphs`), else :meth:`eager_step`."""
        if self.graphs is not None:
            loss = self.graphs.step(self, batch_x, batch_t, grad_steps)
        else:
            loss = self.eager_step(batch_x, batch_t, grad_steps)
        if self.norm is not None:
            self.norm_sum += self.norm
        return loss

    def eager_step(self, batch_x, batch_t, grad_steps):
        """:meth:`train_step` one call at a time: the book's loop body."""
        self.norm = None
        loss = self.model.forward(batch_x, batch_t)
        self.model.backward()
        for step in grad_steps:
            step(self)
        self.update()
        return loss

    def update(self):
        """The optimizer's step on the model's parameters (a subclass may
        change how, e.g. the learning rate of this one update). When the next
        CUDA graph holds the update, only its step size goes to the device
        (``optimizer.scalars()``)."""
        if self.graphs is not None and self.graphs.pending is not None:
            self.graphs.load_scalars(self.optimizer.scalars())
        else:
            self.optimizer.update(self.model.params, self.model.grads)

    def report(self, step_start):
        """The book's report line; one host read of the window's loss. A part's
        ``report`` sees ``window`` first and may stop training instead."""
        self.window = float(self.window_loss)
        self.emit('report')
        if self.stopped:
            return
        ppl = _exp(self.window / self.window_count)
        elapsed = time.time() - self.start_time
        rate = self.done * self.tokens / max(self.epoch_seconds + time.perf_counter() - step_start, 1e-9)
        loss_text = 'perplexity %.2f' % ppl if self.unit == 'word' else describe_ppl(ppl, self.unit)
        write('| epoch %d | iter %d / %d | time %d[s] | %s | %.0f tok/s'
              % (self.current_epoch + 1, self.iteration + 1, self.max_iters, elapsed, loss_text, rate))
        self.ppl_list.append(float(ppl))
        self.window_loss, self.window_count = 0, 0

    def count_time(self, step_start):
        self.last_step_seconds = time.perf_counter() - step_start
        self.epoch_seconds += self.last_step_seconds
        self.train_seconds += self.last_step_seconds
        self.total_iters += 1

    def end_epoch(self):
        """Parts' ``epoch_end`` (the watch reads the epoch's loss); then, unless
        the epoch was cut short by anything but the time budget, its perplexity
        and throughput, and ``current_epoch`` advances."""
        self.emit('epoch_end')
        if self.stopped and self.stopped.reason != 'time':
            return
        if self.first + self.done:
            self.epoch_ppl = _exp(self.epoch_total / (self.first + self.done))
        if self.done:
            self.tokens_per_sec = self.done * self.tokens / max(self.epoch_seconds, 1e-9)
        self.current_epoch += 1

    @property
    def epoch_total(self):
        """The epoch's summed loss as a float, read from the device once per epoch."""
        if not isinstance(self.epoch_loss, float):
            self.epoch_loss = float(self.epoch_loss)
        return self.epoch_loss

    def get_batch(self, x, t, batch_size, time_size):
        """(batch_size, time_size) inputs and targets at the current time index
        (the ``rows`` of them: a data-parallel rank's block)."""
        data_size = len(x)
        offsets = np.arange(batch_size)[self.rows] * (data_size // batch_size)
        idx = window_indices(offsets, self.time_idx, time_size, data_size)
        self.time_idx += time_size
        return x[idx], t[idx]

    def epoch_iters(self, xs, ts, batch_size, time_size):
        """Iterations in one pass over the host arrays (xs, ts)."""
        data_size = len(xs)
        max_iters = data_size // (batch_size * time_size)
        if max_iters < 1:
            raise DataError(f"corpus of {data_size} tokens is too short for batch_size={batch_size} x "
                            f"time_size={time_size}: it needs at least {batch_size * time_size + 1} tokens; "
                            f"use a smaller --batch-size/--time-size or a longer corpus")
        return max_iters

    def plot(self, path=None, ylim=None):
        """Plot ``ppl_list`` (see :meth:`BaseTrainer.plot_reports`)."""
        return self.plot_reports(self.ppl_list, 'perplexity', path, ylim)


def _exp(x):
    """exp(x) as a perplexity: inf, not OverflowError, for a huge finite loss."""
    return math.exp(x) if x < 709.0 else math.inf


# -- weights listed twice ------------------------------------------------------------

_SHARING = {}           # listing key -> (params, grads, kept indices, additions); the last few seen
_SHARING_SIZE = 4


def remove_duplicate(params, grads):
    """``(params, grads)`` with each shared weight once, its gradient the sum
    of all of its gradients, as the book's function.

    A weight listed again, as the same array or as its transpose (the book's
    weight tying, ``TimeAffine(embed_W.T, ...)``), is left out and its
    gradient added to the first one's in place (transposed back). A gradient
    that is itself the kept one, or a view of it, is not added twice.

    The book compares every pair of parameters, values included, on every
    call. Here the sharing is read from where each array's memory lies
    (:func:`common.tying.find_shared`) once per listing and kept, keyed by the
    arrays' identities; a call then costs one pass over the two lists.
    """
    key = tuple(map(id, params)) + tuple(map(id, grads))
    entry = _SHARING.get(key)
    if entry is None:
        entry = _sharing(params, grads)
        if len(_SHARING) >= _SHARING_SIZE:
            _SHARING.pop(next(iter(_SHARING)))
        _SHARING[key] = entry       # holds the arrays, so no id in the key is reused meanwhile
    _, _, keep, additions = entry
    for i, j, transposed in additions:
        grads[i] += grads[j].T if transposed else grads[j]
    return [params[i] for i in keep], [grads[i] for i in keep]


def _sharing(params, grads):
    """(params, grads, the indices kept, the additions (i, j, transposed)) of one listing."""
    shared = find_shared(params)
    additions = []
    for j, (i, transposed) in shared.items():
        view = grads[j].T if transposed else grads[j]
        same = (address(view) == address(grads[i]) and view.shape == grads[i].shape
                and view.strides == grads[i].strides)
        if not same:
            additions.append((i, j, transposed))
    keep = [i for i in range(len(params)) if i not in shared]
    return list(params), list(grads), keep, additions

"""RnnlmTrainer: truncated BPTT over one long corpus, as in the book."""
import math
import time

import numpy

from common.np import *  # noqa: F401,F403
from common import np as backend
from common.errors import DataError
from common.progress import progress, write
from common.tying import merge_shared_params
from common.util import clip_grads, window_indices


def describe_ppl(ppl, unit='word'):
    """'ppl 123.45', or for character models the loss in nats/char and bits
    per character as well: loss = ln(ppl) nats = ln(ppl) / ln 2 bits."""
    if unit == 'char':
        nats = math.log(ppl)
        return f'loss {nats:.4f} nats/char | {nats / math.log(2):.4f} bpc | ppl {ppl:.3f}'
    return f'ppl {ppl:.2f}'


class RnnlmTrainer:
    """Train a language model with truncated backpropagation through time.

    Batching follows the book: row i of every batch starts at offset
    ``i * (len(xs) // batch_size)`` and all rows advance together,
    ``time_size`` tokens per iteration, so the stateful layers see each row
    as one continuous stream. ``fit`` starts at the beginning of the corpus
    (time index 0), like the book's.

    After ``fit``: ``ppl_list`` holds the perplexity of every report window,
    ``epoch_ppl`` the training perplexity of the last epoch, and
    ``tokens_per_sec`` its throughput. ``total_iters`` and ``train_seconds``
    count all iterations and the seconds spent in them, over every ``fit``.

    Subclasses change the batching by overriding :meth:`epoch_iters` and
    :meth:`get_batch` (see :class:`common.sentences.SentenceTrainer`).

    Hooks for the epoch loop of :mod:`common.training` (the book's use needs
    none of them): ``fit(..., start_iter=k, start_loss=s)`` starts the first
    epoch at iteration k, the first k losses having summed to s; setting
    ``stop_requested`` (from a signal handler) ends ``fit`` after the current
    iteration, with ``stopped_at`` the iterations done in that epoch and
    ``epoch_loss`` their summed loss; a non-finite loss or gradient norm ends
    ``fit`` with ``diverged_at`` set to the iteration where it was seen (and
    a report line saying so, unless ``report_divergence`` is false).
    """

    def __init__(self, model, optimizer):
        self.model = model
        self.optimizer = optimizer
        self.time_idx = None
        self.ppl_list = None
        self.eval_interval = None
        self.current_epoch = 0
        self.epoch_ppl = None
        self.tokens_per_sec = None
        self.stop_requested = False
        self.stopped_at = None
        self.diverged_at = None
        self.report_divergence = True
        self.epoch_loss = 0
        self.total_iters = 0
        self.train_seconds = 0.0
        self.last_step_seconds = 0.0
        self.epoch_iters_done = 0
        self.stopped_early = False

    def get_batch(self, x, t, batch_size, time_size):
        """(batch_size, time_size) inputs and targets at the current time index."""
        data_size = len(x)
        offsets = np.arange(batch_size) * (data_size // batch_size)
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

    def fit(self, xs, ts, max_epoch=10, batch_size=20, time_size=35, max_grad=None, eval_interval=20,
            start_iter=0, start_loss=0.0, unit='word', max_seconds=None, callback=None):
        """Train for ``max_epoch`` passes over (xs, ts), 1-D id arrays with
        ts[i] the token after xs[i]. Clips the global gradient norm to
        ``max_grad`` when given. Every ``eval_interval`` iterations prints
        ``| epoch 1 | iter 21 / 1327 | time 12[s] | perplexity 812.33 | 1234 tok/s``
        (with ``unit='char'`` the loss in nats/char and bpc as well).

        ``max_seconds`` caps ``train_seconds``: no iteration starts that would
        end past it, judged by the last iteration's duration (``stopped_early``
        tells). ``callback(trainer, loss)`` runs after every iteration with its
        loss (a backend scalar); its time counts neither in ``train_seconds``
        nor in tokens/s. ``start_iter``/``start_loss``: see the class docstring."""
        max_iters = self.epoch_iters(xs, ts, batch_size, time_size)
        merge_shared_params(self.model)      # a weight the book's models list twice (W, W.T): once
        xs, ts = backend.asarray(xs), backend.asarray(ts)   # one host-to-device copy per fit
        self.time_idx = start_iter * time_size
        self.ppl_list = []
        self.eval_interval = eval_interval
        self.stopped_at = self.diverged_at = None
        model, optimizer = self.model, self.optimizer
        tokens = batch_size * time_size
        start_time = time.time()
        self.stopped_early = False

        for _ in range(max_epoch):
            # Losses and gradient norms stay backend scalars until a report
            # reads them: on the GPU the loop never waits for the device.
            # Both are >= 0, so a sum is finite exactly when every term is.
            total_loss, loss_count = 0, 0
            epoch_loss, norm_sum = start_loss, 0
            first, start_iter, start_loss = start_iter, 0, 0.0
            done, epoch_seconds = 0, 0.0
            steps = progress(range(first, max_iters), total=max_iters - first,
                             desc=f'epoch {self.current_epoch + 1}', unit='batch')
            for iters in steps:
                if self.out_of_time(max_seconds):
                    self.stopped_early = True
                    break
                step_start = time.perf_counter()
                batch_x, batch_t = self.get_batch(xs, ts, batch_size, time_size)
                loss = model.forward(batch_x, batch_t)
                model.backward()
                if max_grad is not None:
                    norm_sum += clip_grads(model.grads, max_grad)
                optimizer.update(model.params, model.grads)
                total_loss += loss
                epoch_loss += loss
                loss_count += 1
                done += 1

                if eval_interval and iters % eval_interval == 0:
                    window = float(total_loss)
                    if not _finite(window, norm_sum):
                        self.diverged_at = iters + 1
                        break
                    ppl = _exp(window / loss_count)
                    elapsed = time.time() - start_time
                    rate = done * tokens / max(epoch_seconds + time.perf_counter() - step_start, 1e-9)
                    loss_text = describe_ppl(ppl, unit) if unit == 'char' else 'perplexity %.2f' % ppl
                    write('| epoch %d | iter %d / %d | time %d[s] | %s | %.0f tok/s'
                          % (self.current_epoch + 1, iters + 1, max_iters, elapsed, loss_text, rate))
                    self.ppl_list.append(float(ppl))
                    total_loss, loss_count = 0, 0
                self.last_step_seconds = time.perf_counter() - step_start
                epoch_seconds += self.last_step_seconds
                self.train_seconds += self.last_step_seconds
                self.total_iters += 1
                if callback is not None:
                    callback(self, loss)
                if self.stop_requested and iters + 1 < max_iters:
                    if _finite(float(epoch_loss), norm_sum):     # never stop in a diverged state
                        self.stopped_at = iters + 1
                    else:
                        self.diverged_at = iters + 1
                    break
            self.epoch_loss = epoch_loss
            self.epoch_iters_done = done
            getattr(steps, 'close', lambda: None)()
            total = None
            if self.diverged_at is None and self.stopped_at is None:
                total = float(epoch_loss)
                if not _finite(total, norm_sum):
                    self.diverged_at = first + done
            if self.diverged_at is not None and self.report_divergence:
                write('| epoch %d | iter %d / %d | non-finite loss or gradient norm: training stopped; lower the '
                      'learning rate or clip gradients' % (self.current_epoch + 1, self.diverged_at, max_iters))
            if self.stopped_at is not None or self.diverged_at is not None:
                return
            if first + done:
                self.epoch_ppl = _exp(total / (first + done))
            if done:
                self.tokens_per_sec = done * tokens / max(epoch_seconds, 1e-9)
            self.current_epoch += 1
            if self.stopped_early:
                break

    def out_of_time(self, max_seconds):
        """Whether one more iteration, as long as the last one, would take
        ``train_seconds`` past ``max_seconds`` (never, when that is None)."""
        return max_seconds is not None and self.train_seconds + self.last_step_seconds > max_seconds

    def plot(self, path=None, ylim=None):
        """Plot ``ppl_list``. With ``path`` write a PNG there (works without a
        display) and return the path; without it show the figure."""
        from common.plotting import line_plot
        x = numpy.arange(len(self.ppl_list))
        xlabel = 'iterations (x' + str(self.eval_interval) + ')'
        return line_plot({'train': (x, self.ppl_list)}, xlabel, 'perplexity', path=path, ylim=ylim)


def _finite(loss_sum, norm_sum):
    """Whether a summed loss (a float) and a summed gradient norm are finite."""
    return math.isfinite(loss_sum) and math.isfinite(float(norm_sum))


def _exp(x):
    """exp(x) as a perplexity: inf, not OverflowError, for a huge finite loss."""
    return math.exp(x) if x < 709.0 else math.inf

"""The parts of a training run: small objects that :class:`RnnlmTrainer`
calls at a few named events, each with one job.

Events, in the order of one epoch (see :class:`Part`): ``epoch_start``;
per iteration, after the update, ``iteration``; at a report, ``report``
(before the line is printed); ``epoch_end``. Every part gets the trainer and
reads what it needs from it (``iteration``, ``loss``, ``total_iters``,
``train_seconds``, ...); ``trainer.stop(reason)`` ends training after the
current iteration. Gradient steps (:class:`common.trainer.ClipGrads`,
:class:`GradNormLog`) are plain callables ``step(trainer)`` in
``trainer.grad_steps``, run between backward and update.

Why this and not Chainer's extensions with triggers or Keras/Lightning's
callback classes with a dozen hooks: the loop here has exactly four places
where anything happens, every part runs on every call and decides for
itself ("every N iterations" is one modulo), and the only thing a part asks
of the loop is to stop. A list of objects with four methods says that and
no more; a trigger language, priorities or a shared "observation" dict
would be machinery with one user each.
"""
import contextlib
import math
import signal
import threading
from collections import namedtuple

from common.np import np
from common.run.progress import describe_ppl, progress_bar

#: Why and where ``fit`` ended early: reason ('interrupt', 'diverged', 'time', or a part's own)
#: and the iterations done in that epoch (counting any ``start`` iterations).
Stop = namedtuple('Stop', 'reason at')


def finite(*values):
    """Whether every value (floats or backend scalars, e.g. summed losses and
    gradient norms) is finite."""
    return all(math.isfinite(float(v)) for v in values)


class Part:
    """The events; each does nothing here, a part overrides the ones it needs."""

    def epoch_start(self, trainer):
        """Before the first iteration of an epoch (``trainer.first``: where it starts)."""

    def report(self, trainer):
        """At a report, ``trainer.window`` the window's summed loss just read."""

    def iteration(self, trainer):
        """After each update; ``trainer.loss`` is the iteration's loss (a backend scalar)."""

    def epoch_end(self, trainer):
        """After the last iteration of an epoch, or of a stopped one."""


class ProgressBar(Part):
    """A tqdm bar per epoch on a terminal; nothing when output goes to a file."""

    def __init__(self):
        self.bar = None

    def epoch_start(self, trainer):
        self.bar = progress_bar(trainer.max_iters - trainer.first, f'epoch {trainer.current_epoch + 1}', 'batch')

    def iteration(self, trainer):
        if self.bar is not None:
            self.bar.update()

    def epoch_end(self, trainer):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class DivergenceWatch(Part):
    """Stops training at a non-finite loss or gradient norm. It looks where the
    host reads the loss anyway, at each report and at the end of the epoch,
    never per iteration (on a GPU that would wait for the device every step).
    A run stopped by Ctrl-C is looked at once more, parameters included, so
    that it never saves a diverged state. ``say``: print one line about it."""

    def __init__(self, say=True):
        self.say = say

    def report(self, trainer):
        if not finite(trainer.window, trainer.norm_sum):
            trainer.stop('diverged')
            self.announce(trainer)

    def epoch_end(self, trainer):
        stopped = trainer.stopped
        if stopped and stopped.reason == 'diverged':
            return
        bad = not finite(trainer.epoch_total, trainer.norm_sum)
        if not bad and stopped and stopped.reason == 'interrupt':
            bad = not all(bool(np.isfinite(p).all()) for p in trainer.model.params)
        if bad:
            trainer.stop('diverged')           # replaces a Ctrl-C or time-budget stop
            self.announce(trainer)

    def announce(self, trainer):
        if self.say:
            print('| epoch %d | iter %d / %d | non-finite loss or gradient norm: training stopped; lower the '
                  'learning rate or clip gradients' % (trainer.current_epoch + 1, trainer.stopped.at,
                                                       trainer.max_iters), flush=True)


class TimeBudget(Part):
    """Ends training once ``max_seconds`` were spent in training iterations
    (``trainer.train_seconds``; the parts' time, evaluation included, does not
    count): no iteration starts that would end past the budget, judged by the
    duration of the last one."""

    def __init__(self, max_seconds):
        self.max_seconds = max_seconds

    def spent(self, trainer):
        return trainer.train_seconds + trainer.last_step_seconds > self.max_seconds

    def iteration(self, trainer):
        if self.spent(trainer):
            trainer.stop('time')


class CtrlC(Part):
    """While :meth:`catching`, the first Ctrl-C (SIGINT) sets ``requested``
    and training stops after the current iteration; on an epoch's last
    iteration the epoch completes instead. A second Ctrl-C raises
    KeyboardInterrupt at once. Outside the main thread (where signals cannot
    be caught) ``catching`` does nothing."""

    def __init__(self):
        self.requested = False

    def iteration(self, trainer):
        if self.requested and trainer.iteration + 1 < trainer.max_iters:
            trainer.stop('interrupt')

    def handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def catching(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self.handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


class ValidEvery(Part):
    """Validation inside an epoch: every ``interval`` iterations (counted over
    the run) the model's recurrent state is put aside, ``valid`` is evaluated
    from a fresh state, and training goes on from the state it had. Each
    point (iteration, training seconds, train and valid perplexity) is
    printed, logged as an ``eval`` record and drawn into ``curve_path``."""

    def __init__(self, interval, evaluate, valid, log, unit, curve_path):
        self.interval, self.evaluate, self.valid, self.log = interval, evaluate, valid, log
        self.unit, self.curve_path = unit, curve_path
        self.points = []
        self.loss_sum, self.loss_count = 0, 0

    def iteration(self, trainer):
        self.loss_sum += trainer.loss          # a backend scalar: no device sync per iteration
        self.loss_count += 1
        if trainer.total_iters % self.interval == 0:
            state = trainer.model.get_state()
            trainer.model.reset_state()
            self.add_point(trainer)
            trainer.model.set_state(state)

    def at_epoch_end(self, trainer):
        """Valid perplexity after the epoch; the point of this very iteration when there is one."""
        if self.points and self.points[-1]['iter'] == trainer.total_iters:
            return self.points[-1]['valid_ppl']
        return self.add_point(trainer)

    def add_point(self, trainer):
        from common.run.plotting import plot_curve
        valid_ppl = self.evaluate(trainer.model, self.valid)
        train_ppl = math.exp(float(self.loss_sum) / self.loss_count) if self.loss_count else trainer.epoch_ppl
        self.loss_sum, self.loss_count = 0, 0
        point = {'iter': trainer.total_iters, 'train_seconds': trainer.train_seconds,
                 'train_ppl': train_ppl, 'valid_ppl': valid_ppl}
        self.points.append(point)
        print(f'| iter {trainer.total_iters} | train time {trainer.train_seconds:.1f}[s] | train '
              f'{describe_ppl(train_ppl, self.unit)} | valid {describe_ppl(valid_ppl, self.unit)}', flush=True)
        self.log.write(event='eval', **point)
        if self.curve_path:
            plot_curve(self.points, self.curve_path, self.unit)
        return valid_ppl


class GradNormLog:
    """Gradient step: every ``interval`` iterations (counted over the run)
    write the global gradient norm before clipping to ``log`` as a
    ``grad_norm`` record. Reading the norm waits for the device, once per
    ``interval`` iterations."""

    def __init__(self, interval, log):
        self.interval, self.log = interval, log

    def __call__(self, trainer):
        it = trainer.total_iters + 1                  # this iteration, counted from 1
        if it % self.interval == 0:
            norm = math.sqrt(sum(float((g * g).sum()) for g in trainer.model.grads))
            self.log.write(event='grad_norm', iter=it, epoch=trainer.current_epoch + 1, grad_norm=norm)

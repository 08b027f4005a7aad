"""The epoch loop shared by the training scripts.

Each epoch: one pass of :class:`RnnlmTrainer` over the training corpus,
validation perplexity, the learning rate divided by ``lr_decay`` when
validation did not improve, the best parameters kept (and saved). At the end,
or on Ctrl-C, the best parameters are evaluated on the test corpus. Every
epoch appends a JSON record to ``log.jsonl`` and redraws ``perplexity.png``.

A run loses nothing:

* **Checkpoints.** With ``checkpoint_path`` a checkpoint
  (:mod:`common.checkpoint`) is written atomically at every epoch end and on
  Ctrl-C; ``resume=load_checkpoint(path)`` goes on from it. On the CPU a
  resumed run ends with the same parameters, bit for bit, as one that never
  stopped.
* **Ctrl-C** (SIGINT) finishes the current iteration, saves a checkpoint with
  the position inside the epoch, evaluates the best parameters on test and
  returns with ``interrupted`` true. A second Ctrl-C stops at once
  (KeyboardInterrupt); the last checkpoint stays whole.
* **Divergence.** A non-finite loss or gradient norm (looked for at each
  report and at the end of the epoch, where the host reads the loss anyway)
  or validation perplexity puts back the last good state (the start of the
  epoch, or the resume point), divides the learning rate by
  ``divergence_factor`` and runs the epoch again, with a one-line warning.
  The ``max_divergences``-th divergence in a row raises :class:`TrainingError`;
  the best parameters stay saved and are loaded into the model.
* **Bad input** is refused before anything is written: empty or too short
  corpora, token ids outside the vocabulary, non-positive sizes or learning
  rate, output paths that cannot be written, a checkpoint of another run.
"""
import contextlib
import json
import math
import numbers
import os
import signal
import threading
import time

import numpy

from common.checkpoint import (TrainingState, corpus_fingerprint, restore_snapshot, save_checkpoint,
                               snapshot)
from common.cli import check_output_dir
from common.np import np
from common.errors import ConfigError, DataError, TrainingError, UserError
from common.plotting import line_plot
from common.trainer import RnnlmTrainer, describe_ppl
from common.util import eval_perplexity


class JsonLog:
    """One JSON object per line; each write is flushed, so a log survives a crash."""

    def __init__(self, path):
        self.path = path

    def write(self, **record):
        with open(self.path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')


def train_with_validation(model, optimizer, train, valid, test, *, max_epoch, batch_size, time_size,
                          max_grad, eval_interval, out_dir, lr_decay=4.0, eval_batch_size=10,
                          save_path=None, vocab=None, unit='word', log_extra=None, checkpoint_path=None,
                          resume=None, resume_lr=None, options=None, divergence_factor=4.0, max_divergences=3,
                          trainer=None, evaluate=None, max_seconds=None, valid_interval=None, save_meta=None,
                          lr_epoch_factor=1.0):
    """Train ``model`` on the 1-D id array ``train`` for ``max_epoch`` epochs;
    returns a dict with the history, the best validation and the test
    perplexity (``None`` when ``test`` is None or no epoch finished), whether
    Ctrl-C stopped the run, and the checkpoint path. The best parameters go to
    ``save_path`` with ``vocab`` (tokens in id order) beside them; the
    checkpoint, with ``options`` (JSON-able, e.g. ``vars(args)``), to
    ``checkpoint_path``. ``resume`` (a :class:`common.checkpoint.Checkpoint`)
    continues that run, with ``resume_lr`` as learning rate when given.

    For other kinds of runs (the character models): ``trainer`` replaces
    :class:`RnnlmTrainer` (e.g. :class:`common.sentences.SentenceTrainer`) and
    ``evaluate(model, corpus) -> perplexity`` replaces :func:`eval_perplexity`;
    ``max_seconds`` ends training once that many seconds were spent in training
    iterations (evaluation does not count; the budget restarts on resume) and
    evaluates the epoch in progress; ``valid_interval`` evaluates on ``valid``
    every that many iterations as well, logging ``eval`` records and drawing
    ``curve.png`` (loss against training time); ``lr_epoch_factor`` multiplies
    the learning rate after every epoch (exponential decay, on top of the
    decay on a plateau); ``save_meta`` is stored beside the best parameters."""
    settings = dict(max_epoch=max_epoch, batch_size=batch_size, time_size=time_size, max_grad=max_grad,
                    eval_interval=eval_interval, lr_decay=lr_decay, eval_batch_size=eval_batch_size,
                    divergence_factor=divergence_factor, max_divergences=max_divergences)
    check_training_options(optimizer.lr if resume_lr is None else resume_lr, **settings)
    vocab_size = getattr(model, 'config', {}).get('vocab_size')
    sentences = getattr(trainer, 'sentence_mode', False)
    check_corpus(train, 'training corpus', vocab_size, batch_size, time_size, '--batch-size', sentences)
    for corpus, name in ((valid, 'validation corpus'), (test, 'test corpus')):
        if corpus is not None:
            check_corpus(corpus, name, vocab_size, eval_batch_size, time_size, '--eval-batch-size', sentences)
    check_output_dir(out_dir)
    for path, flag in ((save_path, '--save'), (checkpoint_path, '--checkpoint')):
        if path:
            check_output_dir(os.path.dirname(os.path.abspath(path)), flag)
    data = dict(corpus_fingerprint(train), batch_size=batch_size, time_size=time_size)
    if resume is not None:
        resume.check(model, optimizer, vocab, data)
    if evaluate is None:
        def evaluate(m, corpus):
            return eval_perplexity(m, corpus, batch_size=eval_batch_size, time_size=time_size)
    settings.update(max_seconds=max_seconds, lr_epoch_factor=lr_epoch_factor)
    loop = EpochLoop(model, optimizer, train, valid, test, settings, out_dir=out_dir, save_path=save_path,
                     vocab=vocab, unit=unit, checkpoint_path=checkpoint_path, options=options, data=data,
                     trainer=trainer, evaluate=evaluate, valid_interval=valid_interval, save_meta=save_meta)
    return loop.run(resume, resume_lr, log_extra)


class EpochLoop:
    """The loop of :func:`train_with_validation`, one method per event."""

    def __init__(self, model, optimizer, train, valid, test, settings, *, out_dir, save_path, vocab, unit,
                 checkpoint_path, options, data, trainer, evaluate, valid_interval, save_meta):
        self.model, self.optimizer = model, optimizer
        self.train, self.valid, self.test = train, valid, test
        self.s = settings
        self.save_path, self.vocab, self.unit = save_path, vocab, unit
        self.checkpoint_path, self.options, self.data = checkpoint_path, options, data
        self.trainer = trainer or RnnlmTrainer(model, optimizer)
        self.trainer.report_divergence = False      # diverged() says what happens instead
        self.evaluate, self.save_meta = evaluate, save_meta
        self.tracker = ValidTracker(evaluate, valid, None, unit, os.path.join(out_dir, 'curve.png')) \
            if valid_interval else None
        self.callback = self.tracker.interval_callback(valid_interval) if self.tracker else None
        self.state, self.best_params = TrainingState(), None
        self.log = JsonLog(os.path.join(out_dir, 'log.jsonl'))
        if self.tracker:
            self.tracker.log = self.log
        self.plot_path = os.path.join(out_dir, 'perplexity.png')
        self.started, self.elapsed_before = time.time(), 0.0
        self.unsaved = False

    def elapsed(self):
        return self.elapsed_before + time.time() - self.started

    def run(self, resume, resume_lr, log_extra):
        if resume is not None:
            self.state, self.best_params = resume.restore(self.model, self.optimizer)
            self.elapsed_before = self.state.elapsed_s
            if resume_lr is not None:
                self.optimizer.lr = resume_lr
            self.announce_resume(resume.path)
        else:
            self.log.write(event='start', model=self.model.describe(), params=self.model.param_count(),
                           **(log_extra or {}))
        # Non-finite values are detected and handled below: no overflow warnings.
        with numpy.errstate(over='ignore', invalid='ignore', divide='ignore'), stop_on_sigint(self.trainer):
            self.epochs()
        return self.finish()

    def announce_resume(self, path):
        st, lr = self.state, self.optimizer.lr
        inside = f', {st.iteration} iterations into epoch {st.epoch + 1}' if st.iteration else ''
        print(f'resumed from {path}: {st.epoch} epochs done{inside}, lr {lr:g}', flush=True)
        if st.epoch >= self.s['max_epoch']:
            print(f"nothing to train: {st.epoch} of --max-epoch {self.s['max_epoch']} epochs are done; "
                  f"give a larger --max-epoch to go on", flush=True)
        self.log.write(event='resume', checkpoint=os.path.abspath(path), epoch=st.epoch, iteration=st.iteration,
                       lr=lr)

    def epochs(self):
        s, trainer = self.s, self.trainer
        good = self.remember()
        while (self.state.epoch < s['max_epoch'] and not trainer.stop_requested
               and not trainer.out_of_time(s['max_seconds'])):
            st, lr = self.state, self.optimizer.lr
            trainer.current_epoch = st.epoch
            trainer.fit(self.train[:-1], self.train[1:], max_epoch=1, batch_size=s['batch_size'],
                        time_size=s['time_size'], max_grad=s['max_grad'], eval_interval=s['eval_interval'],
                        start_iter=st.iteration, start_loss=st.epoch_loss, unit=self.unit,
                        max_seconds=s['max_seconds'], callback=self.callback)
            if trainer.stopped_early and trainer.epoch_iters_done == 0:
                break                                    # the time budget ran out before this epoch
            if trainer.stopped_at is not None and not all_finite(self.model.params):
                trainer.diverged_at, trainer.stopped_at = trainer.stopped_at, None
            if trainer.stopped_at is not None:           # Ctrl-C inside the epoch, in a good state
                st.iteration, st.epoch_loss = trainer.stopped_at, float(trainer.epoch_loss)
                self.save()
                return
            problem, valid_ppl = self.divergence(), None
            if problem is None:
                valid_ppl = self.validate()
                if not math.isfinite(valid_ppl):
                    problem = f'validation perplexity {valid_ppl} after epoch {st.epoch + 1}'
            if problem:
                good = self.diverged(good, problem)
                continue
            self.end_epoch(lr, valid_ppl)
            good = self.remember()
            if trainer.stopped_early:
                break
        if self.unsaved:
            self.save()

    def divergence(self):
        """What went wrong in the epoch just trained, or None."""
        trainer, epoch = self.trainer, self.state.epoch + 1
        if trainer.diverged_at is not None:
            return f'non-finite loss or gradient norm at iteration {trainer.diverged_at} of epoch {epoch}'
        if not math.isfinite(trainer.epoch_ppl):
            return f'training perplexity {trainer.epoch_ppl} in epoch {epoch}'
        return None

    def remember(self):
        """The last good state, kept on the device."""
        return snapshot(self.model, self.optimizer), self.state.copy()

    def validate(self):
        self.model.reset_state()
        ppl = self.tracker.at_epoch_end(self.trainer) if self.tracker else self.evaluate(self.model, self.valid)
        self.model.reset_state()
        return ppl

    def end_epoch(self, lr, valid_ppl):
        st, trainer, unit = self.state, self.trainer, self.unit
        st.epoch += 1
        st.iteration, st.epoch_loss, st.divergences = 0, 0.0, 0
        for key, value in (('epoch', st.epoch), ('train', trainer.epoch_ppl), ('valid', valid_ppl), ('lr', lr)):
            st.history[key].append(value)
        if st.best_valid_ppl is None or valid_ppl < st.best_valid_ppl:
            st.best_valid_ppl = valid_ppl
            self.best_params = [p.copy() for p in self.model.params]
            if self.save_path:
                self.model.save_params(self.save_path, vocab=self.vocab, meta=self.save_meta)
        else:
            self.optimizer.lr /= self.s['lr_decay']
        self.optimizer.lr *= self.s['lr_epoch_factor']
        self.save()                 # before the epoch line: a printed epoch is a saved epoch
        elapsed = self.elapsed()
        budget = ' | time budget reached' if trainer.stopped_early else ''
        print(f'| epoch {st.epoch} | train {describe_ppl(trainer.epoch_ppl, unit)} | valid '
              f'{describe_ppl(valid_ppl, unit)} | lr {lr:g} | time {elapsed:.0f}[s] | '
              f'{trainer.tokens_per_sec:.0f} tok/s{budget}', flush=True)
        self.log.write(event='epoch', epoch=st.epoch, train_ppl=trainer.epoch_ppl, valid_ppl=valid_ppl, lr=lr,
                       elapsed_s=elapsed, tokens_per_sec=trainer.tokens_per_sec,
                       train_seconds=trainer.train_seconds, iters=trainer.epoch_iters_done,
                       partial=trainer.stopped_early)
        plot_history(st.history, self.plot_path, unit)

    def diverged(self, good, problem):
        """Go back to the last good state with a smaller learning rate, or give up."""
        failed = self.state
        failed_lr = self.optimizer.lr
        restore_snapshot(self.model, self.optimizer, good[0])
        self.state = good[1].copy()
        self.state.divergences = count = failed.divergences + 1
        limit = self.s['max_divergences']
        self.log.write(event='divergence', problem=problem, lr=failed_lr, in_a_row=count)
        if count >= limit:
            self.use_best()
            kept = [f"the best parameters (valid ppl {self.state.best_valid_ppl:.2f}) are in {self.save_path}"
                    ] if self.save_path and self.best_params is not None else []
            if self.checkpoint_path and os.path.exists(self.checkpoint_path):
                kept.append(f'the last good state is in {self.checkpoint_path}')
            raise TrainingError(f"training diverged {count} times in a row (last: {problem}, learning rate "
                                f"{failed_lr:g}){': ' + ' and '.join(kept) if kept else ''}; "
                                f"start again with a smaller --lr or --max-grad")
        self.optimizer.lr = failed_lr / self.s['divergence_factor']
        back = (f'iteration {self.state.iteration} of epoch {self.state.epoch + 1}' if self.state.iteration
                else f'the start of epoch {self.state.epoch + 1}')
        print(f'-- warning: {problem}: back to {back} with learning rate '
              f'{failed_lr:g} / {self.s["divergence_factor"]:g} = {self.optimizer.lr:g} '
              f'({count} in a row; the run stops at {limit})', flush=True)
        self.unsaved = True
        return good

    def save(self):
        """Write the checkpoint. A failed write (disk full, ...) leaves the
        previous checkpoint whole; training goes on after a warning."""
        if self.checkpoint_path:
            self.state.elapsed_s = self.elapsed()
            try:
                save_checkpoint(self.checkpoint_path, self.model, self.optimizer, self.state, self.best_params,
                                self.vocab, self.options, self.data)
            except (OSError, UserError) as exc:
                print(f'-- warning: could not write the checkpoint {self.checkpoint_path} ({exc}); the previous '
                      f'one is intact and training goes on', flush=True)
                return
        self.unsaved = False

    def use_best(self):
        if self.best_params is not None:
            for p, best in zip(self.model.params, self.best_params):
                p[...] = best

    def finish(self):
        st, unit = self.state, self.unit
        interrupted = self.trainer.stop_requested
        if interrupted:
            where = (f'iteration {st.iteration} of epoch {st.epoch + 1}' if st.iteration
                     else f'epoch {st.epoch}')
            saved = (f': checkpoint in {self.checkpoint_path}, continue with --resume {self.checkpoint_path}'
                     if self.checkpoint_path else '')
            print(f'-- stopped by Ctrl-C after {where}{saved}', flush=True)
        self.use_best()
        test_ppl = None
        if self.test is not None and self.best_params is not None:
            self.model.reset_state()
            test_ppl = self.evaluate(self.model, self.test)
            print(f'| end | best valid {describe_ppl(st.best_valid_ppl, unit)} | test '
                  f'{describe_ppl(test_ppl, unit)}', flush=True)
        elif self.best_params is None:
            print('-- no epoch finished: no test perplexity', flush=True)
        else:
            print(f'| end | best valid {describe_ppl(st.best_valid_ppl, unit)}', flush=True)
        trainer = self.trainer
        self.log.write(event='end', best_valid_ppl=st.best_valid_ppl, test_ppl=test_ppl,
                       elapsed_s=self.elapsed(), train_seconds=trainer.train_seconds, iters=trainer.total_iters,
                       interrupted=interrupted)
        return {'history': st.history, 'best_valid_ppl': st.best_valid_ppl, 'test_ppl': test_ppl,
                'plot': self.plot_path, 'log': self.log.path, 'interrupted': interrupted,
                'checkpoint': self.checkpoint_path, 'train_seconds': trainer.train_seconds,
                'curve': self.tracker.points if self.tracker else None}


def all_finite(arrays):
    """Whether every element of every array is finite (one host read per array)."""
    return all(bool(np.isfinite(a).all()) for a in arrays)


@contextlib.contextmanager
def stop_on_sigint(trainer):
    """While active, the first Ctrl-C asks ``trainer`` to stop after the
    current iteration; a second one raises KeyboardInterrupt at once. Outside
    the main thread (where signals cannot be caught) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def check_training_options(lr, *, max_epoch, batch_size, time_size, max_grad, eval_interval, lr_decay,
                           eval_batch_size, divergence_factor, max_divergences):
    """Raise :class:`ConfigError` for a rate or size a run cannot use."""
    def number(value, ok):
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and ok(value)

    if not number(lr, lambda v: v > 0):
        raise ConfigError(f"the learning rate must be a positive number, got {lr!r}: pass e.g. --lr 10")
    for name, value in (('max_epoch', max_epoch), ('batch_size', batch_size), ('time_size', time_size),
                        ('eval_batch_size', eval_batch_size), ('max_divergences', max_divergences)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(eval_interval, numbers.Integral) or eval_interval < 0:
        raise ConfigError(f"eval_interval must be a non-negative integer (0: no reports), got {eval_interval!r}")
    if max_grad is not None and not number(max_grad, lambda v: v > 0):
        raise ConfigError(f"max_grad must be a positive number or None (no clipping), got {max_grad!r}")
    if not number(lr_decay, lambda v: v > 0):
        raise ConfigError(f"lr_decay must be a positive number, got {lr_decay!r}")
    if not number(divergence_factor, lambda v: v > 1):
        raise ConfigError(f"divergence_factor must be a number greater than 1, got {divergence_factor!r}")


def check_corpus(corpus, name, vocab_size, batch_size, time_size, batch_flag, sentences=False):
    """Raise :class:`DataError` unless ``corpus`` is a 1-D array of ids in
    [0, vocab_size) long enough for one (batch_size, time_size) batch plus
    the target of its last token; in sentence mode (``sentences``: batches
    are padded groups of whole sentences, of any size) for one sentence
    ``<bos> … <eos>``. One pass over the corpus, once per run."""
    need = 2 if sentences else batch_size * time_size + 1
    if getattr(corpus, 'ndim', None) != 1 or not numpy.issubdtype(corpus.dtype, numpy.integer):
        raise DataError(f"the {name} must be a 1-D array of integer token ids, got "
                        f"{getattr(corpus, 'dtype', type(corpus).__name__)} of shape {getattr(corpus, 'shape', '?')}: "
                        f"encode the text first (e.g. dataset.ptb.encode)")
    if len(corpus) < need and sentences:
        raise DataError(f"the {name} has no sentence ({len(corpus)} tokens): give it at least one non-empty line")
    if len(corpus) == 0:
        raise DataError(f"the {name} is empty: give a corpus with at least {need} tokens")
    if len(corpus) < need:
        raise DataError(f"the {name} has {len(corpus)} tokens but {batch_flag} {batch_size} x --time-size "
                        f"{time_size} needs at least {need}: use smaller sizes or a longer corpus")
    low, high = int(corpus.min()), int(corpus.max())
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        bad = low if low < 0 else high
        raise DataError(f"the {name} holds token id {bad}, outside the model's vocabulary of {vocab_size} "
                        f"words (ids 0 to {vocab_size - 1 if vocab_size else '?'}): encode it with the "
                        f"vocabulary the model was built with")


class ValidTracker:
    """Validation during an epoch: every ``interval`` iterations the model's
    recurrent state is put aside, ``valid`` is evaluated from a fresh state,
    and training goes on from the state it had. Each point
    (iteration, training seconds, train and valid perplexity) is printed,
    logged as an ``eval`` record and drawn into ``curve.png``."""

    def __init__(self, evaluate, valid, log, unit, curve_path):
        self.evaluate, self.valid, self.log, self.unit = evaluate, valid, log, unit
        self.curve_path = curve_path
        self.points = []
        self.loss_sum, self.loss_count = 0, 0

    def interval_callback(self, interval):
        def callback(trainer, loss):
            self.loss_sum += loss          # a backend scalar: no device sync per iteration
            self.loss_count += 1
            if trainer.total_iters % interval == 0:
                state = trainer.model.get_state()
                trainer.model.reset_state()
                self.add_point(trainer)
                trainer.model.set_state(state)
        return callback

    def at_epoch_end(self, trainer):
        """Valid perplexity after the epoch; the interval point of this very
        iteration when there is one."""
        if self.points and self.points[-1]['iter'] == trainer.total_iters:
            return self.points[-1]['valid_ppl']
        return self.add_point(trainer)

    def add_point(self, trainer):
        valid_ppl = self.evaluate(trainer.model, self.valid)
        train_ppl = math.exp(float(self.loss_sum) / self.loss_count) if self.loss_count else trainer.epoch_ppl
        self.loss_sum, self.loss_count = 0, 0
        point = {'iter': trainer.total_iters, 'train_seconds': trainer.train_seconds,
                 'train_ppl': train_ppl, 'valid_ppl': valid_ppl}
        self.points.append(point)
        print(f'| iter {trainer.total_iters} | train time {trainer.train_seconds:.1f}[s] | train '
              f'{describe_ppl(train_ppl, self.unit)} | valid {describe_ppl(valid_ppl, self.unit)}', flush=True)
        self.log.write(event='eval', **point)
        plot_curve(self.points, self.curve_path, self.unit)
        return valid_ppl


def plot_history(history, path, unit='word'):
    x = history['epoch']
    ylabel = 'perplexity' if unit == 'word' else 'perplexity (per character)'
    return line_plot({'train': (x, history['train']), 'valid': (x, history['valid'])}, 'epoch', ylabel,
                     path=path, logy=True, title='perplexity per epoch')


def plot_curve(points, path, unit='word'):
    """Train and valid loss (nats/char) or perplexity of ``points`` (the
    ``eval`` records) against training seconds."""
    def y(ppl):
        return math.log(ppl) if unit == 'char' else ppl
    x = [p['train_seconds'] for p in points]
    lines = {label: (x, [y(p[f'{label}_ppl']) for p in points]) for label in ('train', 'valid')}
    ylabel = 'loss (nats/char)' if unit == 'char' else 'perplexity'
    return line_plot(lines, 'training time (s)', ylabel, path=path, title=f'{ylabel} during training')

"""The epoch loop shared by the training scripts.

Each epoch: one pass of :class:`RnnlmTrainer` over the training corpus,
validation perplexity, the learning rate divided by ``lr_decay`` when
validation did not improve, the best parameters kept (and saved). At the end,
or on Ctrl-C, the best parameters are evaluated on the test corpus. Every
epoch appends a JSON record to ``log.jsonl`` and redraws ``perplexity.png``.
"""
import json
import math
import os
import time

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
                          save_path=None, vocab=None, unit='word', log_extra=None, trainer=None,
                          evaluate=None, max_seconds=None, valid_interval=None, save_meta=None,
                          lr_epoch_factor=1.0):
    """Train ``model`` on the 1-D id array ``train`` for ``max_epoch`` epochs;
    returns a dict with the history, the best validation and the test
    perplexity (``None`` when ``test`` is None). The best parameters go to
    ``save_path`` with ``vocab`` (tokens in id order) and ``save_meta`` beside them.

    For other kinds of runs (the character models): ``trainer`` replaces
    :class:`RnnlmTrainer` (e.g. :class:`common.sentences.SentenceTrainer`) and
    ``evaluate(model, corpus) -> perplexity`` replaces :func:`eval_perplexity`;
    ``max_seconds`` ends training once that many seconds were spent in training
    iterations (evaluation does not count) and evaluates the epoch in progress;
    ``valid_interval`` evaluates on ``valid`` every that many iterations as well,
    logging ``eval`` records and drawing ``curve.png`` (loss against training time);
    ``lr_epoch_factor`` multiplies the learning rate after every epoch
    (exponential decay, on top of the decay on a plateau).
    """
    trainer = trainer or RnnlmTrainer(model, optimizer)
    if evaluate is None:
        def evaluate(m, corpus):
            return eval_perplexity(m, corpus, batch_size=eval_batch_size, time_size=time_size)
    log = JsonLog(os.path.join(out_dir, 'log.jsonl'))
    plot_path = os.path.join(out_dir, 'perplexity.png')
    tracker = ValidTracker(evaluate, valid, log, unit, os.path.join(out_dir, 'curve.png')) \
        if valid_interval else None
    callback = tracker.interval_callback(valid_interval) if tracker else None
    log.write(event='start', model=model.describe(), params=model.param_count(), **(log_extra or {}))
    history = {'epoch': [], 'train': [], 'valid': []}
    best_ppl, best_params = math.inf, None
    start = time.time()
    interrupted = False
    try:
        for epoch in range(1, max_epoch + 1):
            if trainer.out_of_time(max_seconds):
                break
            lr = optimizer.lr
            trainer.fit(train[:-1], train[1:], max_epoch=1, batch_size=batch_size, time_size=time_size,
                        max_grad=max_grad, eval_interval=eval_interval, unit=unit, max_seconds=max_seconds,
                        callback=callback)
            if trainer.epoch_iters_done == 0:
                break
            model.reset_state()
            valid_ppl = tracker.at_epoch_end(trainer) if tracker else evaluate(model, valid)
            model.reset_state()
            elapsed = time.time() - start
            budget = ' | time budget reached' if trainer.stopped_early else ''
            print(f'| epoch {epoch} | train {describe_ppl(trainer.epoch_ppl, unit)} | valid '
                  f'{describe_ppl(valid_ppl, unit)} | lr {lr:g} | time {elapsed:.0f}[s] | '
                  f'{trainer.tokens_per_sec:.0f} tok/s{budget}', flush=True)
            log.write(event='epoch', epoch=epoch, train_ppl=trainer.epoch_ppl, valid_ppl=valid_ppl, lr=lr,
                      elapsed_s=elapsed, tokens_per_sec=trainer.tokens_per_sec,
                      train_seconds=trainer.train_seconds, iters=trainer.epoch_iters_done,
                      partial=trainer.stopped_early)
            history['epoch'].append(epoch)
            history['train'].append(trainer.epoch_ppl)
            history['valid'].append(valid_ppl)
            if valid_ppl < best_ppl:
                best_ppl = valid_ppl
                best_params = [p.copy() for p in model.params]
                if save_path:
                    model.save_params(save_path, vocab=vocab, meta=save_meta)
            else:
                optimizer.lr /= lr_decay
            optimizer.lr *= lr_epoch_factor
            plot_history(history, plot_path, unit)
            if trainer.stopped_early:
                break
    except KeyboardInterrupt:
        interrupted = True
        print('-- stopped by Ctrl-C: evaluating the best parameters so far', flush=True)

    if best_params is not None:
        for p, best in zip(model.params, best_params):
            p[...] = best
    test_ppl = None
    if test is not None and best_params is not None:
        model.reset_state()
        test_ppl = evaluate(model, test)
        print(f'| end | best valid {describe_ppl(best_ppl, unit)} | test {describe_ppl(test_ppl, unit)}',
              flush=True)
    elif best_params is not None:
        print(f'| end | best valid {describe_ppl(best_ppl, unit)}', flush=True)
    log.write(event='end', best_valid_ppl=best_ppl if best_params is not None else None, test_ppl=test_ppl,
              elapsed_s=time.time() - start, train_seconds=trainer.train_seconds, iters=trainer.total_iters,
              interrupted=interrupted)
    return {'history': history, 'best_valid_ppl': best_ppl, 'test_ppl': test_ppl, 'plot': plot_path,
            'log': log.path, 'interrupted': interrupted, 'train_seconds': trainer.train_seconds,
            'curve': tracker.points if tracker else None}


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

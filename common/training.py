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
from common.trainer import RnnlmTrainer
from common.util import eval_perplexity


class JsonLog:
    """One JSON object per line; each write is flushed, so a log survives a crash."""

    def __init__(self, path):
        self.path = path

    def write(self, **record):
        with open(self.path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')


def describe_ppl(ppl, unit):
    """'ppl 123.45', plus nats and bits per character for character models."""
    if unit == 'char':
        nats = math.log(ppl)
        return f'loss {nats:.4f} nats/char | {nats / math.log(2):.4f} bpc | ppl {ppl:.3f}'
    return f'ppl {ppl:.2f}'


def train_with_validation(model, optimizer, train, valid, test, *, max_epoch, batch_size, time_size,
                          max_grad, eval_interval, out_dir, lr_decay=4.0, eval_batch_size=10,
                          save_path=None, vocab=None, unit='word', log_extra=None):
    """Train ``model`` on the 1-D id array ``train`` for ``max_epoch`` epochs;
    returns a dict with the history, the best validation and the test
    perplexity (``None`` when ``test`` is None). The best parameters go to
    ``save_path`` with ``vocab`` (tokens in id order) beside them."""
    trainer = RnnlmTrainer(model, optimizer)
    log = JsonLog(os.path.join(out_dir, 'log.jsonl'))
    plot_path = os.path.join(out_dir, 'perplexity.png')
    log.write(event='start', model=model.describe(), params=model.param_count(), **(log_extra or {}))
    history = {'epoch': [], 'train': [], 'valid': []}
    best_ppl, best_params = math.inf, None
    start = time.time()
    interrupted = False
    try:
        for epoch in range(1, max_epoch + 1):
            lr = optimizer.lr
            trainer.fit(train[:-1], train[1:], max_epoch=1, batch_size=batch_size, time_size=time_size,
                        max_grad=max_grad, eval_interval=eval_interval)
            model.reset_state()
            valid_ppl = eval_perplexity(model, valid, batch_size=eval_batch_size, time_size=time_size)
            model.reset_state()
            elapsed = time.time() - start
            print(f'| epoch {epoch} | train {describe_ppl(trainer.epoch_ppl, unit)} | valid '
                  f'{describe_ppl(valid_ppl, unit)} | lr {lr:g} | time {elapsed:.0f}[s] | '
                  f'{trainer.tokens_per_sec:.0f} tok/s', flush=True)
            log.write(event='epoch', epoch=epoch, train_ppl=trainer.epoch_ppl, valid_ppl=valid_ppl, lr=lr,
                      elapsed_s=elapsed, tokens_per_sec=trainer.tokens_per_sec)
            history['epoch'].append(epoch)
            history['train'].append(trainer.epoch_ppl)
            history['valid'].append(valid_ppl)
            if valid_ppl < best_ppl:
                best_ppl = valid_ppl
                best_params = [p.copy() for p in model.params]
                if save_path:
                    model.save_params(save_path, vocab=vocab)
            else:
                optimizer.lr /= lr_decay
            plot_history(history, plot_path, unit)
    except KeyboardInterrupt:
        interrupted = True
        print('-- stopped by Ctrl-C: evaluating the best parameters so far', flush=True)

    if best_params is not None:
        for p, best in zip(model.params, best_params):
            p[...] = best
    test_ppl = None
    if test is not None and best_params is not None:
        model.reset_state()
        test_ppl = eval_perplexity(model, test, batch_size=eval_batch_size, time_size=time_size)
        print(f'| end | best valid {describe_ppl(best_ppl, unit)} | test {describe_ppl(test_ppl, unit)}',
              flush=True)
    log.write(event='end', best_valid_ppl=best_ppl if best_params is not None else None, test_ppl=test_ppl,
              elapsed_s=time.time() - start, interrupted=interrupted)
    return {'history': history, 'best_valid_ppl': best_ppl, 'test_ppl': test_ppl, 'plot': plot_path,
            'log': log.path, 'interrupted': interrupted}


def plot_history(history, path, unit='word'):
    x = history['epoch']
    ylabel = 'perplexity' if unit == 'word' else 'perplexity (per character)'
    return line_plot({'train': (x, history['train']), 'valid': (x, history['valid'])}, 'epoch', ylabel,
                     path=path, logy=True, title='perplexity per epoch')

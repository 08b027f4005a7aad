"""The run log: what a training run tells about itself.

One :class:`RunLog` per run prints the lines of its events (resume, epoch,
NT-ASGD, Ctrl-C, end), appends their JSON records to ``log.jsonl``
(:class:`JsonLog`) and redraws ``perplexity.png`` after every epoch. The
parts that log points of their own (:class:`common.run.parts.ValidEvery`,
:class:`common.run.parts.GradNormLog`) write through :meth:`RunLog.write`.
On K processes only rank 0 writes files (``root``); its stdout is the only
one shown.

The records, by ``event``: ``start`` (model, parameter count, processes and
the script's extras), ``resume``, ``epoch``, ``eval``, ``grad_norm``,
``asgd_start``, ``asgd_restart``, ``divergence``, ``end``.
"""
import json
import os

from common.run.progress import describe_ppl


class JsonLog:
    """One JSON object per line; each write is flushed, so a log survives a crash."""

    def __init__(self, path):
        self.path = path               # None: write nothing (a data-parallel rank other than 0)

    def write(self, **record):
        if self.path is None:
            return
        with open(self.path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')

    @staticmethod
    def read(path):
        """The records of the log at ``path``, in order (OSError, ValueError as ``open`` and ``json`` raise them)."""
        with open(path, encoding='utf-8') as f:
            return [json.loads(line) for line in f if line.strip()]


class RunLog:
    """The printed lines, ``log.jsonl`` and ``perplexity.png`` of a run in ``out_dir``."""

    def __init__(self, out_dir, unit='word', root=True):
        self.path = os.path.join(out_dir, 'log.jsonl')
        self.plot_path = os.path.join(out_dir, 'perplexity.png')
        self.json = JsonLog(self.path if root else None)
        self.unit, self.root = unit, root

    def write(self, **record):
        """Append one record to ``log.jsonl``."""
        self.json.write(**record)

    def start(self, model, comm, extra=None):
        processes = {'processes': comm.describe()} if comm.size > 1 else {}
        self.write(event='start', model=model.describe(), params=model.param_count(), **processes, **(extra or {}))

    def resumed(self, checkpoint, state, lr, changes, max_epoch):
        """A run goes on from ``checkpoint`` at ``state`` with learning rate ``lr``."""
        inside = f', {state.iteration} iterations into epoch {state.epoch + 1}' if state.iteration else ''
        print(f'resumed from {checkpoint.path}: {state.epoch} epochs done{inside}, lr {lr:g}', flush=True)
        if changes:
            print(f"settings changed since the checkpoint: {'; '.join(changes)}", flush=True)
        if state.epoch >= max_epoch:
            print(f"nothing to train: {state.epoch} of --max-epoch {max_epoch} epochs are done; "
                  f"give a larger --max-epoch to go on", flush=True)
        self.write(event='resume', checkpoint=os.path.abspath(checkpoint.path), epoch=state.epoch,
                   iteration=state.iteration, lr=lr, changes=changes)

    def epoch(self, state, trainer, valid_ppl, lr, elapsed, partial):
        """The line and record of the epoch ``state.epoch`` just finished (``partial``: cut by the time
        budget), and the plot of the history so far."""
        unit = self.unit
        budget = ' | time budget reached' if partial else ''
        print(f'| epoch {state.epoch} | train {describe_ppl(trainer.epoch_ppl, unit)} | valid '
              f'{describe_ppl(valid_ppl, unit)} | lr {lr:g} | time {elapsed:.0f}[s] | '
              f'{trainer.tokens_per_sec:.0f} tok/s{budget}', flush=True)
        self.write(event='epoch', epoch=state.epoch, train_ppl=trainer.epoch_ppl, valid_ppl=valid_ppl, lr=lr,
                   elapsed_s=elapsed, tokens_per_sec=trainer.tokens_per_sec,
                   train_seconds=trainer.train_seconds, iters=trainer.done, partial=partial)
        if self.root:
            from common.run.plotting import plot_history     # matplotlib only when a run draws
            plot_history(state.history, self.plot_path, unit)

    def asgd(self, event, epoch, optimizer, spent, iters):
        """What :meth:`common.optimizer.ASGD.schedule` did after ``epoch`` ('start', 'latest', 'restart')."""
        opt = optimizer
        if event == 'start':
            print(f'| epoch {epoch} | valid did not improve on {opt.nonmono} epochs ago: '
                  f'averaging the weights (NT-ASGD) from now on', flush=True)
        elif event == 'latest':
            print(f'| epoch {epoch} | {spent:.0%} of the training budget spent: '
                  f'averaging the weights (NT-ASGD) from now on', flush=True)
        elif event == 'restart':
            print(f'| epoch {epoch} | the average did not improve on {opt.nonmono} epochs ago: training goes on '
                  f'from it with a new average (fine-tuning {opt.restarted} of {opt.restarts})', flush=True)
        self.write(event='asgd_restart' if event == 'restart' else 'asgd_start', epoch=epoch, iters=iters)

    def interrupted(self, state, checkpoint_path):
        """The Ctrl-C line: where the run stopped and how to go on."""
        where = f'iteration {state.iteration} of epoch {state.epoch + 1}' if state.iteration else f'epoch {state.epoch}'
        saved = f': checkpoint in {checkpoint_path}, continue with --resume {checkpoint_path}' if checkpoint_path else ''
        print(f'-- stopped by Ctrl-C after {where}{saved}', flush=True)

    def end(self, best_valid_ppl, test_ppl, finished, elapsed, trainer, interrupted):
        """The end line (``finished``: an epoch finished, so there are best parameters) and record."""
        unit = self.unit
        if test_ppl is not None:
            print(f'| end | best valid {describe_ppl(best_valid_ppl, unit)} | test '
                  f'{describe_ppl(test_ppl, unit)}', flush=True)
        elif not finished:
            print('-- no epoch finished: no test perplexity', flush=True)
        else:
            print(f'| end | best valid {describe_ppl(best_valid_ppl, unit)}', flush=True)
        self.write(event='end', best_valid_ppl=best_valid_ppl, test_ppl=test_ppl, elapsed_s=elapsed,
                   train_seconds=trainer.train_seconds, iters=trainer.total_iters, interrupted=interrupted)

"""Divergence recovery: the last good state of a run and the way back to it.

A non-finite loss or gradient norm (:class:`common.run.parts.DivergenceWatch`),
training perplexity or validation perplexity is a divergence. The run puts
back the last good state (the start of the epoch, or the resume point),
divides the learning rate by ``divergence_factor`` and runs the epoch again,
with a one-line warning and a ``divergence`` record in ``log.jsonl``. The
``max_divergences``-th divergence in a row raises :class:`TrainingError`;
the best parameters are loaded into the model first (they are saved).
"""
import math
import os

from common.errors import TrainingError
from common.run.checkpoint import restore_snapshot, snapshot


def divergence(trainer, epoch):
    """What went wrong in epoch ``epoch`` (counted from 1), just trained by ``trainer``, or None."""
    if trainer.stopped and trainer.stopped.reason == 'diverged':
        return f'non-finite loss or gradient norm at iteration {trainer.stopped.at} of epoch {epoch}'
    if not math.isfinite(trainer.epoch_ppl):
        return f'training perplexity {trainer.epoch_ppl} in epoch {epoch}'
    return None


def use_best(model, best_params):
    """Copy ``best_params`` (None: nothing yet) into the model's parameters."""
    if best_params is not None:
        for p, best in zip(model.params, best_params):
            p[...] = best


class Recovery:
    """:meth:`remember` the last good state (kept on the device); :meth:`go_back` to it
    after a divergence, or give up. ``settings``: divergence_factor, max_divergences and
    the paths named when giving up; ``log``: where the ``divergence`` records go."""

    def __init__(self, settings, log):
        self.s, self.log, self.good = settings, log, None

    def remember(self, model, optimizer, state):
        self.good = snapshot(model, optimizer), state.copy()

    def go_back(self, model, optimizer, failed, problem, best_params):
        """After the divergence ``problem`` in the run at ``failed`` (its
        :class:`TrainingState`), restore the last good state with the learning
        rate divided by ``divergence_factor`` and return its state; at
        ``max_divergences`` in a row load ``best_params`` and raise :class:`TrainingError`."""
        good, good_state = self.good
        failed_lr = optimizer.lr
        restore_snapshot(model, optimizer, good)
        state = good_state.copy()
        state.divergences = count = failed.divergences + 1
        limit, factor = self.s.max_divergences, self.s.divergence_factor
        self.log.write(event='divergence', problem=problem, lr=failed_lr, in_a_row=count)
        if count >= limit:
            use_best(model, best_params)
            raise TrainingError(self.giving_up(count, problem, failed_lr, state, best_params is not None))
        optimizer.lr = failed_lr / factor
        back = (f'iteration {state.iteration} of epoch {state.epoch + 1}' if state.iteration
                else f'the start of epoch {state.epoch + 1}')
        print(f'-- warning: {problem}: back to {back} with learning rate {failed_lr:g} / {factor:g} = '
              f'{optimizer.lr:g} ({count} in a row; the run stops at {limit})', flush=True)
        return state

    def giving_up(self, count, problem, failed_lr, state, has_best):
        """The message of the last divergence: what happened and what is kept where."""
        path, ck = self.s.save_path, self.s.checkpoint_path
        kept = [f"the best parameters (valid ppl {state.best_valid_ppl:.2f}) are in {path}"] if path and has_best else []
        if ck and os.path.exists(ck):
            kept.append(f'the last good state is in {ck}')
        return (f"training diverged {count} times in a row (last: {problem}, learning rate "
                f"{failed_lr:g}){': ' + ' and '.join(kept) if kept else ''}; "
                f"start again with a smaller --lr or --max-grad")

"""The epoch loop shared by the training scripts.

Each epoch: one pass of :class:`RnnlmTrainer` over the training corpus,
validation perplexity, the learning rate divided by ``lr_decay`` when
validation did not improve, the best parameters kept (and saved). At the end,
or on Ctrl-C, the best parameters are evaluated on the test corpus. Every
epoch appends a JSON record to ``log.jsonl`` and redraws ``perplexity.png``.
What happens inside an epoch is the trainer's loop and its parts
(:mod:`common.run.parts`); the run's settings are one
:class:`common.run.settings.TrainSettings`.

A run loses nothing:

* **Checkpoints.** A checkpoint (:mod:`common.run.checkpoint`) is written
  atomically to ``settings.checkpoint_path`` at every epoch end and on
  Ctrl-C; ``resume=load_checkpoint(path)`` goes on from it. On the CPU a
  resumed run ends with the same parameters, bit for bit, as one that never
  stopped.
* **Ctrl-C** (SIGINT, :class:`common.run.parts.CtrlC`) finishes the current
  iteration, saves a checkpoint with the position inside the epoch, evaluates
  the best parameters on test and returns with ``interrupted`` true. A second
  Ctrl-C stops at once (KeyboardInterrupt); the last checkpoint stays whole.
* **Divergence.** A non-finite loss or gradient norm
  (:class:`common.run.parts.DivergenceWatch`) or validation perplexity puts back
  the last good state (the start of the epoch, or the resume point), divides
  the learning rate by ``divergence_factor`` and runs the epoch again, with a
  one-line warning. The ``max_divergences``-th divergence in a row raises
  :class:`TrainingError`; the best parameters stay saved and are loaded into
  the model.
* **Bad input** is refused before anything is written: empty or too short
  corpora, token ids outside the vocabulary, non-positive sizes or learning
  rate, output paths that cannot be written, a checkpoint of another run.
"""
import contextlib
import functools
import math
import os
import time
from collections import namedtuple

import numpy

from common.parallel import communicator, steps as data_parallel
from common import backend
from common.run.checkpoint import (TrainingState, corpus_fingerprint, hidden_states, restore_snapshot,
                               save_checkpoint, snapshot)
from common.parallel.steps import AllReduceGrads, AverageLoss, FollowRoot, split_rows
from common.errors import ConfigError, DataError, TrainingError, UserError
from common.run.parts import CtrlC, DivergenceWatch, GradNormLog, JsonLog, ProgressBar, TimeBudget, ValidEvery
from common.run.plotting import plot_history
from common.run.progress import describe_ppl
from common.trainer import RnnlmTrainer
from common.tying import merge_shared_params
from common.util import eval_perplexity
from common.batching.variable_bptt import VariableBpttTrainer

#: The three corpora of a run (1-D id arrays; ``test`` may be None).
Corpora = namedtuple('Corpora', 'train valid test')


def train_with_validation(model, optimizer, corpora, settings, *, trainer=None, evaluate=None, resume=None,
                          vocab=None, save_meta=None, log_extra=None, options=None):
    """Train ``model`` on ``corpora.train`` as ``settings`` (a
    :class:`TrainSettings`) say; returns a dict with the history, the best
    validation and the test perplexity (``None`` when there is no test
    corpus or no epoch finished), whether Ctrl-C stopped the run, and the
    checkpoint path. The best parameters go to ``settings.save_path`` with
    ``vocab`` (tokens in id order) and ``save_meta`` beside them; the
    checkpoint holds the settings and ``options`` (JSON-able, e.g.
    ``vars(args)``). ``resume`` (a :class:`common.run.checkpoint.Checkpoint`)
    continues that run; ``log_extra`` goes into the log's ``start`` record.

    For other kinds of runs (the character models): ``trainer`` replaces
    :class:`RnnlmTrainer` (e.g. :class:`common.batching.sentences.SentenceTrainer`) and
    ``evaluate(model, corpus) -> perplexity`` replaces :func:`eval_perplexity`.

    Started by mpiexec on K processes, the ranks share the work
    (:mod:`common.parallel.steps`) and only rank 0 writes files."""
    s, corpora, comm = settings, Corpora(*corpora), communicator.world()
    s.check(optimizer.lr if s.resume_lr is None else s.resume_lr)
    vocab_size = getattr(model, 'config', {}).get('vocab_size')
    sentences = getattr(trainer, 'sentence_mode', False)
    check_corpus(corpora.train, 'training corpus', vocab_size, s.batch_size, s.time_size, '--batch-size',
                 sentences)
    for corpus, name in ((corpora.valid, 'validation corpus'), (corpora.test, 'test corpus')):
        if corpus is not None:
            check_corpus(corpus, name, vocab_size, s.eval_batch_size, s.time_size, '--eval-batch-size',
                         sentences)
    if s.variable_bptt and trainer is not None and not isinstance(trainer, VariableBpttTrainer):
        raise ConfigError(f"--variable-bptt draws windows of the book's batching, which {type(trainer).__name__} "
                          f"does not use: leave it off")
    if trainer is None:
        trainer = (VariableBpttTrainer(model, optimizer, seed=s.seed or 0) if s.variable_bptt
                   else RnnlmTrainer(model, optimizer))
    split_rows(comm, trainer, s.batch_size, s.eval_batch_size, sentences)
    data = dict(corpus_fingerprint(corpora.train), batch_size=s.batch_size, time_size=s.time_size)
    merge_shared_params(model)          # before any snapshot or checkpoint lists the parameters
    if resume is not None:
        resume.check(model, optimizer, vocab, data)
    if evaluate is None and comm.size > 1:
        evaluate = functools.partial(data_parallel.eval_perplexity, comm, batch_size=s.eval_batch_size,
                                     time_size=s.time_size)
    if s.weight_decay and getattr(optimizer, 'weight_decay', None) != s.weight_decay:
        raise ConfigError(f"--weight-decay {s.weight_decay:g} is part of the SGD update, which "
                          f"{type(optimizer).__name__} does not do: use --optimizer sgd (in code: "
                          f"common.run.loop.make_sgd(lr, settings)) or leave --weight-decay at 0")
    if s.asgd_nonmono and not hasattr(optimizer, 'averaged'):
        raise ConfigError(f"--asgd-nonmono averages SGD, not {type(optimizer).__name__}: use SGD (in code: "
                          f"common.run.loop.make_sgd(lr, settings)) or leave averaging off")
    evaluate = evaluate or functools.partial(eval_perplexity, batch_size=s.eval_batch_size, time_size=s.time_size)
    record = Record(vocab, save_meta, options, data)
    return EpochLoop(model, optimizer, corpora, s, trainer, evaluate, record, comm).run(resume, log_extra)


def make_sgd(lr, settings):
    """The SGD optimizer of ``settings``: :class:`common.optimizer.ASGD` (NT-ASGD)
    when ``asgd_nonmono`` is set, the book's SGD otherwise; both with its ``weight_decay``."""
    from common.optimizer import ASGD, SGD
    s = settings
    return (ASGD(lr, nonmono=s.asgd_nonmono, weight_decay=s.weight_decay, restarts=s.asgd_restarts)
            if s.asgd_nonmono else SGD(lr, weight_decay=s.weight_decay))


def averaged_weights(optimizer, model):
    """A context in which ``model`` holds the weights a run evaluates and
    saves: NT-ASGD's average once it started (:meth:`ASGD.averaged`), else its own."""
    averaged = getattr(optimizer, 'averaged', None)
    return averaged(model.params) if averaged else contextlib.nullcontext()


#: What a run writes beside the parameters: vocabulary, metadata of the saved
#: parameters, options and training-data fingerprint of the checkpoint.
Record = namedtuple('Record', 'vocab save_meta options data')


class EpochLoop:
    """The epochs of :func:`train_with_validation`, one method per event.
    Its trainer's parts become those of a run: progress bar, the silent
    divergence watch (:meth:`diverged` says what happens instead), validation
    every ``valid_interval`` iterations, time budget, Ctrl-C; the gradient-norm
    log joins its gradient steps. A new part is one more entry in ``parts``
    or ``steps`` here (docs/architecture.md). On K processes (``comm``) the
    gradient all-reduce is the first step, the loss average the first part
    and following rank 0's stop the last; only rank 0 writes files."""

    def __init__(self, model, optimizer, corpora, settings, trainer, evaluate, record,
                 comm=communicator.SingleProcess()):
        self.model, self.optimizer, self.corpora, self.s = model, optimizer, corpora, settings
        self.trainer, self.evaluate, self.record, self.comm = trainer, evaluate, record, comm
        s, out, root, parallel = settings, settings.out_dir, comm.is_root, comm.size > 1
        self.log = JsonLog(os.path.join(out, 'log.jsonl') if root else None)
        self.ctrl_c = CtrlC()
        self.budget = TimeBudget(s.max_seconds) if s.max_seconds else None
        self.valid_every = ValidEvery(s.valid_interval, self.evaluate_averaged, corpora.valid, self.log, s.unit,
                                      os.path.join(out, 'curve.png') if root else None) if s.valid_interval else None
        # Rank 0 alone decides when to stop: its clock and its Ctrl-C (FollowRoot tells the others).
        parts = [AverageLoss(comm) if parallel else None, ProgressBar(), self.valid_every, DivergenceWatch(say=False),
                 self.budget if root else None, self.ctrl_c if root else None, FollowRoot(comm) if parallel else None]
        steps = [AllReduceGrads(comm) if parallel else None,
                 GradNormLog(s.grad_norm_interval, self.log) if s.grad_norm_interval else None]
        trainer.parts = [p for p in parts if p is not None]
        trainer.grad_steps = trainer.grad_steps + [g for g in steps if g is not None]   # after the caller's
        trainer.unit = s.unit
        self.state, self.best_params = TrainingState(), None
        self.checkpoints = Checkpoints(s, record, comm)
        self.plot_path = os.path.join(out, 'perplexity.png')
        self.started, self.elapsed_before = time.time(), 0.0
        self.unsaved = False

    def elapsed(self):
        return self.elapsed_before + time.time() - self.started

    def run(self, resume, log_extra):
        if resume is not None:
            self.state, self.best_params = self.checkpoints.resume(resume, self.model, self.optimizer, self.log,
                                                                   self.trainer.rows)
            self.elapsed_before = self.state.elapsed_s
        else:
            processes = {'processes': self.comm.describe()} if self.comm.size > 1 else {}
            self.log.write(event='start', model=self.model.describe(), params=self.model.param_count(),
                           **processes, **(log_extra or {}))
        if self.comm.size > 1:        # the replicas start alike: rank 0's parameters and generators
            self.comm.bcast_arrays(self.model.params)
            backend.set_rng_state(self.comm.bcast(backend.get_rng_state()))
        # Non-finite values are detected and handled below: no overflow warnings.
        with numpy.errstate(over='ignore', invalid='ignore', divide='ignore'), self.ctrl_c.catching():
            self.epochs()
        return self.finish()

    def more(self):
        """Whether to start (or repeat) an epoch (as rank 0 judges it)."""
        return self.comm.bcast(self.state.epoch < self.s.max_epoch and not self.ctrl_c.requested
                               and not (self.budget and self.budget.spent(self.trainer)))

    def epochs(self):
        s, trainer, train = self.s, self.trainer, self.corpora.train
        good = self.remember()
        while self.more():
            st, lr = self.state, self.optimizer.lr
            trainer.current_epoch, trainer.start = st.epoch, (st.iteration, st.epoch_loss)
            trainer.fit(train[:-1], train[1:], max_epoch=1, batch_size=s.batch_size, time_size=s.time_size,
                        max_grad=s.max_grad, eval_interval=s.eval_interval)
            stop = trainer.stopped
            if stop and stop.reason == 'interrupt':      # Ctrl-C inside the epoch, in a good state
                st.iteration, st.epoch_loss = stop.at, trainer.epoch_total
                self.save()
                return
            problem = self.divergence()
            valid_ppl = None if problem else self.validate()
            if valid_ppl is not None and not math.isfinite(valid_ppl):
                problem = f'validation perplexity {valid_ppl} after epoch {st.epoch + 1}'
            if problem:
                good = self.diverged(good, problem)
                continue
            self.end_epoch(lr, valid_ppl, partial=bool(stop) and stop.at < trainer.max_iters)
            good = self.remember()
            if stop:                                     # the time budget
                break
        if self.unsaved:
            self.save()

    def divergence(self):
        """What went wrong in the epoch just trained, or None."""
        trainer, epoch = self.trainer, self.state.epoch + 1
        if trainer.stopped and trainer.stopped.reason == 'diverged':
            return f'non-finite loss or gradient norm at iteration {trainer.stopped.at} of epoch {epoch}'
        if not math.isfinite(trainer.epoch_ppl):
            return f'training perplexity {trainer.epoch_ppl} in epoch {epoch}'
        return None

    def remember(self):
        """The last good state, kept on the device."""
        return snapshot(self.model, self.optimizer), self.state.copy()

    def evaluate_averaged(self, model, corpus):
        with averaged_weights(self.optimizer, model):
            return self.evaluate(model, corpus)

    def validate(self):
        """Valid perplexity of the weights a run keeps (NT-ASGD's average once it started)."""
        self.model.reset_state()
        if self.valid_every:
            ppl = self.valid_every.at_epoch_end(self.trainer)
        else:
            ppl = self.evaluate_averaged(self.model, self.corpora.valid)
        self.model.reset_state()
        return ppl

    def observe(self, valid_ppl):
        """Tell NT-ASGD the epoch's validation loss; say when averaging starts
        or restarts from the average (its fine-tuning stage)."""
        observe = getattr(self.optimizer, 'observe', None)
        event = observe and observe(math.log(valid_ppl))
        opt, epoch = self.optimizer, self.state.epoch
        if event == 'start':
            print(f'| epoch {epoch} | valid did not improve on {opt.nonmono} epochs ago: '
                  f'averaging the weights (NT-ASGD) from now on', flush=True)
        elif (observe and not opt.averaging and self.s.asgd_latest      # rank 0's clock decides for every rank
              and self.comm.bcast(self.budget_spent() >= self.s.asgd_latest)):
            opt.start()
            event = 'start'
            print(f'| epoch {epoch} | {self.budget_spent():.0%} of the training budget spent: '
                  f'averaging the weights (NT-ASGD) from now on', flush=True)
        elif event == 'restart':
            opt.restart(self.model.params)
            print(f'| epoch {epoch} | the average did not improve on {opt.nonmono} epochs ago: training goes on '
                  f'from it with a new average (fine-tuning {opt.restarted} of {opt.restarts})', flush=True)
        if event:
            self.log.write(event=f'asgd_{event}', epoch=epoch, iters=self.trainer.total_iters)

    def budget_spent(self):
        """The fraction of the training budget spent: epochs of --max-epoch, or
        training seconds of --max-seconds, whichever is further."""
        spent = self.state.epoch / self.s.max_epoch
        if self.s.max_seconds:
            spent = max(spent, self.trainer.train_seconds / self.s.max_seconds)
        return spent

    def end_epoch(self, lr, valid_ppl, partial):
        st, trainer, unit = self.state, self.trainer, self.s.unit
        st.epoch += 1
        st.iteration, st.epoch_loss, st.divergences = 0, 0.0, 0
        for key, value in (('epoch', st.epoch), ('train', trainer.epoch_ppl), ('valid', valid_ppl), ('lr', lr)):
            st.history[key].append(value)
        if st.best_valid_ppl is None or valid_ppl < st.best_valid_ppl:
            st.best_valid_ppl = valid_ppl
            with averaged_weights(self.optimizer, self.model):       # the weights just validated
                self.best_params = [p.copy() for p in self.model.params]
                if self.s.save_path and self.comm.is_root:
                    self.model.save_params(self.s.save_path, vocab=self.record.vocab, meta=self.record.save_meta)
        else:
            self.optimizer.lr /= self.s.lr_decay
        self.optimizer.lr *= self.s.lr_epoch_factor
        self.observe(valid_ppl)
        self.save()                 # before the epoch line: a printed epoch is a saved epoch
        elapsed = self.elapsed()
        budget = ' | time budget reached' if partial else ''
        print(f'| epoch {st.epoch} | train {describe_ppl(trainer.epoch_ppl, unit)} | valid '
              f'{describe_ppl(valid_ppl, unit)} | lr {lr:g} | time {elapsed:.0f}[s] | '
              f'{trainer.tokens_per_sec:.0f} tok/s{budget}', flush=True)
        self.log.write(event='epoch', epoch=st.epoch, train_ppl=trainer.epoch_ppl, valid_ppl=valid_ppl, lr=lr,
                       elapsed_s=elapsed, tokens_per_sec=trainer.tokens_per_sec,
                       train_seconds=trainer.train_seconds, iters=trainer.done, partial=partial)
        if self.comm.is_root:
            plot_history(st.history, self.plot_path, unit)

    def diverged(self, good, problem):
        """Go back to the last good state with a smaller learning rate, or give up."""
        failed, failed_lr = self.state, self.optimizer.lr
        restore_snapshot(self.model, self.optimizer, good[0])
        self.state = good[1].copy()
        self.state.divergences = count = failed.divergences + 1
        limit, factor = self.s.max_divergences, self.s.divergence_factor
        self.log.write(event='divergence', problem=problem, lr=failed_lr, in_a_row=count)
        if count >= limit:
            self.use_best()
            path, ck = self.s.save_path, self.s.checkpoint_path
            kept = [f"the best parameters (valid ppl {self.state.best_valid_ppl:.2f}) are in {path}"
                    ] if path and self.best_params is not None else []
            if ck and os.path.exists(ck):
                kept.append(f'the last good state is in {ck}')
            raise TrainingError(f"training diverged {count} times in a row (last: {problem}, learning rate "
                                f"{failed_lr:g}){': ' + ' and '.join(kept) if kept else ''}; "
                                f"start again with a smaller --lr or --max-grad")
        self.optimizer.lr = failed_lr / factor
        back = (f'iteration {self.state.iteration} of epoch {self.state.epoch + 1}' if self.state.iteration
                else f'the start of epoch {self.state.epoch + 1}')
        print(f'-- warning: {problem}: back to {back} with learning rate {failed_lr:g} / {factor:g} = '
              f'{self.optimizer.lr:g} ({count} in a row; the run stops at {limit})', flush=True)
        self.unsaved = True
        return good

    def save(self):
        """Write the checkpoint (when the run has one)."""
        self.state.elapsed_s = self.elapsed()
        if self.checkpoints.save(self.model, self.optimizer, self.state, self.best_params):
            self.unsaved = False

    def use_best(self):
        if self.best_params is not None:
            for p, best in zip(self.model.params, self.best_params):
                p[...] = best

    def finish(self):
        st, unit, test = self.state, self.s.unit, self.corpora.test
        interrupted = self.comm.bcast(self.ctrl_c.requested)
        if interrupted:
            where = (f'iteration {st.iteration} of epoch {st.epoch + 1}' if st.iteration
                     else f'epoch {st.epoch}')
            ck = self.s.checkpoint_path
            saved = f': checkpoint in {ck}, continue with --resume {ck}' if ck else ''
            print(f'-- stopped by Ctrl-C after {where}{saved}', flush=True)
        self.use_best()
        test_ppl = None
        if test is not None and self.best_params is not None:
            self.model.reset_state()
            test_ppl = self.evaluate(self.model, test)
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
                'plot': self.plot_path, 'log': os.path.join(self.s.out_dir, 'log.jsonl'),
                'interrupted': interrupted, 'checkpoint': self.s.checkpoint_path, 'train_seconds': trainer.train_seconds,
                'curve': self.valid_every.points if self.valid_every else None}

class Checkpoints:
    """Checkpoint and resume: :meth:`save` writes the run to
    ``settings.checkpoint_path`` (atomically; a failed write warns and
    training goes on), :meth:`resume` puts a checkpoint back into the model
    and optimizer and says where the run goes on from."""

    def __init__(self, settings, record, comm=communicator.SingleProcess()):
        self.s, self.record, self.path, self.comm = settings, record, settings.checkpoint_path, comm

    def save(self, model, optimizer, state, best_params):
        """Whether the run is saved now (True without a checkpoint path: nothing to save).
        On K processes rank 0 writes the hidden states of every rank's rows."""
        if not self.path:
            return True
        hidden = self.comm.gather_rows(hidden_states(model, backend.asnumpy))
        if not self.comm.is_root:
            return self.comm.bcast(None)
        r, saved = self.record, True
        try:
            save_checkpoint(self.path, model, optimizer, state, best_params, r.vocab, r.options, r.data,
                            self.s.to_dict(), hidden)
        except (OSError, UserError) as exc:
            print(f'-- warning: could not write the checkpoint {self.path} ({exc}); the previous '
                  f'one is intact and training goes on', flush=True)
            saved = False
        return self.comm.bcast(saved)

    def resume(self, checkpoint, model, optimizer, log, rows=slice(None)):
        """``(state, best_params)`` of ``checkpoint``, restored into ``model`` and
        ``optimizer`` (the hidden states of the batch's ``rows``)."""
        state, best_params = checkpoint.restore(model, optimizer, rows)
        if self.s.resume_lr is not None:
            optimizer.lr = self.s.resume_lr
        lr, max_epoch = optimizer.lr, self.s.max_epoch
        inside = f', {state.iteration} iterations into epoch {state.epoch + 1}' if state.iteration else ''
        print(f'resumed from {checkpoint.path}: {state.epoch} epochs done{inside}, lr {lr:g}', flush=True)
        changes = self.s.changes(checkpoint.settings)
        if changes:
            print(f"settings changed since the checkpoint: {'; '.join(changes)}", flush=True)
        if state.epoch >= max_epoch:
            print(f"nothing to train: {state.epoch} of --max-epoch {max_epoch} epochs are done; "
                  f"give a larger --max-epoch to go on", flush=True)
        log.write(event='resume', checkpoint=os.path.abspath(checkpoint.path), epoch=state.epoch,
                  iteration=state.iteration, lr=lr, changes=changes)
        return state, best_params


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

"""The epoch loop shared by the training scripts.

Each epoch: one pass of :class:`RnnlmTrainer` over the training corpus,
validation perplexity, the learning rate divided by ``lr_decay`` when
validation did not improve, the best parameters kept (and saved). At the end,
or on Ctrl-C, the best parameters are evaluated on the test corpus. Every
epoch appends a JSON record to ``log.jsonl`` and redraws ``perplexity.png``.
What happens inside an epoch is the trainer's loop and its parts
(:mod:`common.run.parts`); the run's settings are one
:class:`common.run.settings.TrainSettings`. :class:`EpochLoop` wires the
pieces of a run and runs its epochs; each piece has its own module: the
printed lines, ``log.jsonl`` and the plot (:mod:`common.run.runlog`),
divergence recovery (:mod:`common.run.recovery`), checkpoints
(:class:`common.run.checkpoint.Checkpoints`), NT-ASGD's schedule
(:meth:`common.optimizer.ASGD.schedule`).

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
* **Divergence** (:mod:`common.run.recovery`). A non-finite loss or gradient norm
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
from common.run.checkpoint import Checkpoints, Record, TrainingState, corpus_fingerprint
from common.parallel.steps import AllReduceGrads, AverageLoss, FollowRoot, split_rows
from common.errors import ConfigError, DataError
from common.run.parts import CtrlC, DivergenceWatch, GradNormLog, ProgressBar, TimeBudget, ValidEvery
from common.run.recovery import Recovery, divergence, use_best
from common.run.runlog import RunLog
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
        evaluate = functools.partial(data_parallel.eval_perplexity_ranks, comm, batch_size=s.eval_batch_size,
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


class EpochLoop:
    """The epochs of :func:`train_with_validation`: it wires the parts of a
    run and runs its epochs. Its trainer's parts become those of a run:
    progress bar, the silent divergence watch (:class:`Recovery` says what
    happens instead), validation every ``valid_interval`` iterations, time
    budget, Ctrl-C; the gradient-norm log joins its gradient steps. A new
    part is one more entry in ``parts`` or ``steps`` of :meth:`wire`
    (docs/architecture.md). On K processes (``comm``) the gradient
    all-reduce is the first step, the loss average the first part and
    following rank 0's stop the last; the time budget and Ctrl-C are parts
    on rank 0 alone; only rank 0 writes files."""

    def __init__(self, model, optimizer, corpora, settings, trainer, evaluate, record,
                 comm=communicator.SingleProcess()):
        self.model, self.optimizer, self.corpora, self.s = model, optimizer, corpora, settings
        self.trainer, self.evaluate, self.record, self.comm = trainer, evaluate, record, comm
        s, root = settings, comm.is_root
        self.log = RunLog(s.out_dir, s.unit, root)
        self.ctrl_c = CtrlC()          # its handler is installed on every rank; the part is rank 0's
        self.budget = TimeBudget(s.max_seconds) if s.max_seconds else None
        self.valid_every = (ValidEvery(s.valid_interval, self.evaluate_averaged, corpora.valid, self.log, s.unit,
                                       os.path.join(s.out_dir, 'curve.png') if root else None)
                            if s.valid_interval else None)
        self.wire(trainer)
        self.state, self.best_params = TrainingState(), None
        self.checkpoints = Checkpoints(s, record, comm)
        self.recovery = Recovery(s, self.log)
        self.started, self.elapsed_before = time.time(), 0.0
        self.unsaved = False

    def wire(self, trainer):
        """Give ``trainer`` the parts and gradient steps of the run."""
        s, comm, root, parallel = self.s, self.comm, self.comm.is_root, self.comm.size > 1
        # Rank 0 alone decides when to stop: its clock and its Ctrl-C (FollowRoot tells the others).
        parts = [AverageLoss(comm) if parallel else None, ProgressBar(), self.valid_every, DivergenceWatch(say=False),
                 self.budget if root else None, self.ctrl_c if root else None, FollowRoot(comm) if parallel else None]
        steps = [AllReduceGrads(comm) if parallel else None,
                 GradNormLog(s.grad_norm_interval, self.log) if s.grad_norm_interval else None]
        trainer.parts = [p for p in parts if p is not None]
        trainer.grad_steps = trainer.grad_steps + [g for g in steps if g is not None]   # after the caller's
        trainer.unit = s.unit

    def elapsed(self):
        return self.elapsed_before + time.time() - self.started

    def run(self, resume, log_extra):
        if resume is not None:
            self.state, self.best_params = self.checkpoints.resume(resume, self.model, self.optimizer,
                                                                   self.trainer.rows)
            self.log.resumed(resume, self.state, self.optimizer.lr, self.s.changes(resume.settings),
                             self.s.max_epoch)
            self.elapsed_before = self.state.elapsed_s
        else:
            self.log.start(self.model, self.comm, log_extra)
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
        self.recovery.remember(self.model, self.optimizer, self.state)
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
            problem = divergence(trainer, st.epoch + 1)
            valid_ppl = None if problem else self.validate()
            if valid_ppl is not None and not math.isfinite(valid_ppl):
                problem = f'validation perplexity {valid_ppl} after epoch {st.epoch + 1}'
            if problem:
                self.state = self.recovery.go_back(self.model, self.optimizer, st, problem, self.best_params)
                self.unsaved = True
                continue
            self.end_epoch(lr, valid_ppl, partial=bool(stop) and stop.at < trainer.max_iters)
            self.recovery.remember(self.model, self.optimizer, self.state)
            if stop:                                     # the time budget
                break
        if self.unsaved:
            self.save()

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
        """Hand the epoch's validation loss to NT-ASGD's schedule
        (:meth:`common.optimizer.ASGD.schedule`) with the fraction of the
        budget spent (rank 0's clock decides for every rank); log what it did."""
        schedule = getattr(self.optimizer, 'schedule', None)
        if schedule is None:
            return
        latest = self.s.asgd_latest
        spent = self.comm.bcast(self.budget_spent()) if latest else 0.0
        event = schedule(math.log(valid_ppl), self.model.params, spent, latest)
        if event:
            self.log.asgd(event, self.state.epoch, self.optimizer, spent, self.trainer.total_iters)

    def budget_spent(self):
        """The fraction of the training budget spent: epochs of --max-epoch, or
        training seconds of --max-seconds, whichever is further."""
        spent = self.state.epoch / self.s.max_epoch
        if self.s.max_seconds:
            spent = max(spent, self.trainer.train_seconds / self.s.max_seconds)
        return spent

    def end_epoch(self, lr, valid_ppl, partial):
        st = self.state
        st.epoch += 1
        st.iteration, st.epoch_loss, st.divergences = 0, 0.0, 0
        for key, value in (('epoch', st.epoch), ('train', self.trainer.epoch_ppl), ('valid', valid_ppl), ('lr', lr)):
            st.history[key].append(value)
        if st.best_valid_ppl is None or valid_ppl < st.best_valid_ppl:
            st.best_valid_ppl = valid_ppl
            self.keep_best()
        else:
            self.optimizer.lr /= self.s.lr_decay
        self.optimizer.lr *= self.s.lr_epoch_factor
        self.observe(valid_ppl)
        self.save()                 # before the epoch line: a printed epoch is a saved epoch
        self.log.epoch(st, self.trainer, valid_ppl, lr, self.elapsed(), partial)

    def keep_best(self):
        """Keep (and save) the weights just validated as the best."""
        with averaged_weights(self.optimizer, self.model):
            self.best_params = [p.copy() for p in self.model.params]
            if self.s.save_path and self.comm.is_root:
                self.model.save_params(self.s.save_path, vocab=self.record.vocab, meta=self.record.save_meta)

    def save(self):
        """Write the checkpoint (when the run has one)."""
        self.state.elapsed_s = self.elapsed()
        if self.checkpoints.save(self.model, self.optimizer, self.state, self.best_params):
            self.unsaved = False

    def finish(self):
        st, test = self.state, self.corpora.test
        interrupted = self.comm.bcast(self.ctrl_c.requested)
        if interrupted:
            self.log.interrupted(st, self.s.checkpoint_path)
        use_best(self.model, self.best_params)
        test_ppl = None
        if test is not None and self.best_params is not None:
            self.model.reset_state()
            test_ppl = self.evaluate(self.model, test)
        trainer = self.trainer
        self.log.end(st.best_valid_ppl, test_ppl, self.best_params is not None, self.elapsed(), trainer, interrupted)
        return {'history': st.history, 'best_valid_ppl': st.best_valid_ppl, 'test_ppl': test_ppl,
                'plot': self.log.plot_path, 'log': self.log.path, 'interrupted': interrupted,
                'checkpoint': self.s.checkpoint_path, 'train_seconds': trainer.train_seconds,
                'curve': self.valid_every.points if self.valid_every else None}


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

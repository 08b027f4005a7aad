"""Each part of a training run on its own (common.run.parts), on a trainer with
hand-made models; the parts working together in a run are tested in test_loop.py."""
import json
import math
import signal

import numpy as np
import pytest

import common.run.parts as parts
from common.optimizer import SGD
from common.run.parts import CtrlC, DivergenceWatch, GradNormLog, Part, ProgressBar, Stop, TimeBudget, ValidEvery
from common.run.runlog import JsonLog
from common.trainer import RnnlmTrainer
import common.trainer as trainer_module

CORPUS = np.arange(201)          # 20 iterations of 2 x 5


class Fixed:
    """A 'model' with loss ``loss`` and the gradients ``grads`` at every step."""

    def __init__(self, loss=1.0, grads=(3.0, 4.0)):
        self.loss = loss
        self.params, self.grads = [np.zeros(len(grads))], [np.array(grads, dtype=float)]
        self.fixed = np.array(grads, dtype=float)

    def forward(self, xs, ts, train_flg=True):
        return self.loss

    def backward(self, dout=1):
        self.grads[0][...] = self.fixed


def fit(trainer, **kw):
    trainer.fit(CORPUS[:-1], CORPUS[1:], **dict(dict(max_epoch=1, batch_size=2, time_size=5, eval_interval=0), **kw))
    return trainer


class Events(Part):
    def __init__(self):
        self.seen = []

    def epoch_start(self, trainer):
        self.seen.append(('epoch_start', trainer.first))

    def report(self, trainer):
        self.seen.append(('report', trainer.iteration + 1))

    def iteration(self, trainer):
        self.seen.append(('iteration', trainer.iteration + 1))

    def epoch_end(self, trainer):
        self.seen.append(('epoch_end', trainer.done))


def test_events_come_in_the_order_of_the_loop():
    events = Events()
    trainer = fit(RnnlmTrainer(Fixed(), SGD(0.1), parts=[events]), max_epoch=2, eval_interval=10)
    epoch = ([('epoch_start', 0), ('report', 1), ('iteration', 1)] + [('iteration', i) for i in range(2, 11)]
             + [('report', 11)] + [('iteration', i) for i in range(11, 21)] + [('epoch_end', 20)])
    assert events.seen == epoch + epoch and trainer.current_epoch == 2


def test_a_part_that_stops_ends_fit_after_that_iteration():
    class StopAt(Part):
        def iteration(self, trainer):
            if trainer.total_iters == 3:
                trainer.stop('mine')

    trainer = fit(RnnlmTrainer(Fixed(), SGD(0.1), parts=[StopAt()]), max_epoch=3)
    assert trainer.stopped == Stop('mine', 3) and trainer.total_iters == 3 and trainer.current_epoch == 0


class Bar:
    def __init__(self):
        self.updates, self.closed = 0, False

    def update(self):
        self.updates += 1

    def close(self):
        self.closed = True


def test_progress_bar_counts_the_iterations_of_each_epoch(monkeypatch):
    bars = []
    monkeypatch.setattr(parts, 'progress_bar', lambda total, desc, unit: bars.append((Bar(), total, desc)) or
                        bars[-1][0])
    trainer = RnnlmTrainer(Fixed(), SGD(0.1), parts=[ProgressBar()])
    trainer.start = (5, 5.0)
    fit(trainer, max_epoch=2)
    assert [(b.updates, b.closed, total, desc) for b, total, desc in bars] == [(15, True, 15, 'epoch 1'),
                                                                                (20, True, 20, 'epoch 2')]


def test_progress_bar_off_the_terminal_does_nothing():
    trainer = fit(RnnlmTrainer(Fixed(), SGD(0.1), parts=[ProgressBar()]))
    assert trainer.parts[0].bar is None and trainer.current_epoch == 1


def test_divergence_watch_at_a_report_and_at_the_epoch_end(capsys):
    trainer = fit(RnnlmTrainer(Fixed(loss=math.inf), SGD(0.1), parts=[DivergenceWatch()]), eval_interval=3)
    assert trainer.stopped == ('diverged', 1) and trainer.ppl_list == []         # no report line for it
    assert capsys.readouterr().out.startswith('| epoch 1 | iter 1 / 20 | non-finite loss or gradient norm')
    trainer = fit(RnnlmTrainer(Fixed(grads=(math.nan, 1.0)), SGD(0.1), parts=[DivergenceWatch(say=False)]),
                  max_grad=1.0)
    assert trainer.stopped == ('diverged', 20) and capsys.readouterr().out == ''  # the norm, at the epoch end


def test_divergence_watch_turns_a_stop_with_a_non_finite_parameter_into_a_divergence():
    class Poison(Part):
        def iteration(self, trainer):
            if trainer.total_iters == 4:
                trainer.model.params[0][0] = np.inf
                trainer.stop('interrupt')

    trainer = fit(RnnlmTrainer(Fixed(), SGD(0.1), parts=[Poison(), DivergenceWatch(say=False)]))
    assert trainer.stopped == ('diverged', 4)


def test_time_budget_alone():
    budget = TimeBudget(10.0)
    trainer = RnnlmTrainer(Fixed(), SGD(0.1), parts=[])
    trainer.train_seconds, trainer.last_step_seconds = 9.0, 1.0
    assert not budget.spent(trainer)
    trainer.last_step_seconds = 1.5
    assert budget.spent(trainer)


def test_ctrl_c_asks_once_then_interrupts_and_puts_the_handler_back():
    ctrl_c = CtrlC()
    before = signal.getsignal(signal.SIGINT)
    with ctrl_c.catching():
        assert signal.getsignal(signal.SIGINT) == ctrl_c.handler
        signal.raise_signal(signal.SIGINT)
        assert ctrl_c.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_stops_inside_an_epoch_never_on_its_last_iteration():
    ctrl_c = CtrlC()
    trainer = RnnlmTrainer(Fixed(), SGD(0.1), parts=[ctrl_c])
    ctrl_c.requested = True
    trainer.start = (19, 19.0)
    assert fit(trainer).stopped is None and trainer.current_epoch == 1       # the epoch completes
    assert fit(trainer).stopped == ('interrupt', 1)


def test_grad_norm_log_writes_the_norm_before_clipping_every_n_iterations(tmp_path):
    log = JsonLog(str(tmp_path / 'log.jsonl'))
    trainer = RnnlmTrainer(Fixed(grads=(3.0, 4.0)), SGD(0.1), parts=[], grad_steps=[GradNormLog(7, log)])
    fit(trainer, max_epoch=2, max_grad=1.0)
    records = [json.loads(line) for line in open(log.path)]
    assert records == [{'event': 'grad_norm', 'iter': i, 'epoch': 1 + (i > 20), 'grad_norm': 5.0}
                       for i in (7, 14, 21, 28, 35)]
    np.testing.assert_allclose(trainer.model.grads[0], [0.6, 0.8], rtol=1e-6)     # and clipping came after


class Stateful(Fixed):
    """Fixed with a recurrent state the parts may put aside and back."""

    def __init__(self):
        super().__init__()
        self.state, self.calls = 'training state', []

    def get_state(self):
        return self.state

    def reset_state(self):
        self.calls.append('reset')
        self.state = None

    def set_state(self, state):
        self.calls.append(('set', state))
        self.state = state


def test_valid_every_evaluates_from_a_fresh_state_and_puts_the_state_back(tmp_path):
    seen = []

    def evaluate(model, corpus):
        seen.append(model.state)
        return 3.0

    log = JsonLog(str(tmp_path / 'log.jsonl'))
    valid = ValidEvery(8, evaluate, 'valid corpus', log, 'word', str(tmp_path / 'curve.png'))
    trainer = fit(RnnlmTrainer(Stateful(), SGD(0.1), parts=[valid]))
    assert seen == [None, None] and trainer.model.state == 'training state'
    assert trainer.model.calls == ['reset', ('set', 'training state')] * 2
    assert [(p['iter'], p['valid_ppl'], p['train_ppl']) for p in valid.points] == [(8, 3.0, math.e), (16, 3.0, math.e)]
    assert [json.loads(line)['event'] for line in open(log.path)] == ['eval', 'eval']
    assert (tmp_path / 'curve.png').read_bytes()[:4] == b'\x89PNG'
    assert valid.at_epoch_end(trainer) == 3.0 and len(valid.points) == 3       # iteration 20: a new point


def test_checkpoints_save_resume_and_a_failed_write(tmp_path, capsys):
    from ch_gru.rnnlm import Rnnlm
    from common.run.checkpoint import TrainingState, load_checkpoint
    from common.run.settings import TrainSettings
    from common.run.checkpoint import Checkpoints, Record
    from common.run.runlog import RunLog
    np.random.seed(0)
    model, record = Rnnlm(5, 4, 4, num_layers=1), Record(list('abcde'), None, {'lr': 1.0}, {})
    saved = TrainSettings(checkpoint_path=str(tmp_path / 'c.npz'), max_epoch=3)
    assert Checkpoints(saved, record).save(model, SGD(0.5), TrainingState(epoch=1, iteration=2), None)
    assert Checkpoints(TrainSettings(), record).save(model, SGD(0.5), TrainingState(), None)    # no path: nothing
    (tmp_path / 'f').write_text('a file, not a directory')
    broken = TrainSettings(checkpoint_path=str(tmp_path / 'f' / 'c.npz'))
    assert not Checkpoints(broken, record).save(model, SGD(0.5), TrainingState(), None)
    assert '-- warning: could not write the checkpoint' in capsys.readouterr().out

    ck = load_checkpoint(str(tmp_path / 'c.npz'))
    assert ck.settings == saved.to_dict() and ck.options == {'lr': 1.0}
    np.random.seed(1)
    other, opt = Rnnlm(5, 4, 4, num_layers=1), SGD(9.0)
    resumed = TrainSettings(checkpoint_path=saved.checkpoint_path, max_epoch=4, resume_lr=0.25)
    state, best = Checkpoints(resumed, record).resume(ck, other, opt)
    assert (state.epoch, state.iteration, best, opt.lr) == (1, 2, None, 0.25)
    RunLog(str(tmp_path)).resumed(ck, state, opt.lr, resumed.changes(ck.settings), resumed.max_epoch)
    record, = [json.loads(line) for line in open(tmp_path / 'log.jsonl')]
    assert record == {'event': 'resume', 'checkpoint': str(tmp_path / 'c.npz'), 'epoch': 1, 'iteration': 2,
                      'lr': 0.25, 'changes': ['max_epoch 3 -> 4']}
    for p, q in zip(model.params, other.params):
        np.testing.assert_array_equal(p, q)
    out = capsys.readouterr().out
    assert out == (f'resumed from {ck.path}: 1 epochs done, 2 iterations into epoch 2, lr 0.25\n'
                   'settings changed since the checkpoint: max_epoch 3 -> 4\n')


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class SlowModel:
    """A 'model' whose every forward takes one second of the fake clock."""

    def __init__(self, clock):
        self.clock = clock
        self.params, self.grads = [np.zeros(2)], [np.zeros(2)]
        self.calls = 0

    def forward(self, xs, ts, train_flg=True):
        self.clock.now += 1.0
        self.calls += 1
        return np.float64(1.0)

    def backward(self, dout=1):
        pass


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(trainer_module.time, 'perf_counter', c)
    return c


@pytest.mark.parametrize('budget,iters', [(5.0, 5), (5.5, 5), (6.0, 6), (0.5, 1)])
def test_no_iteration_starts_that_would_end_past_the_budget(clock, budget, iters):
    model = SlowModel(clock)
    trainer = RnnlmTrainer(model, SGD(0.1), parts=[TimeBudget(budget)])
    corpus = np.arange(1000)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=3, batch_size=2, time_size=5, eval_interval=0)
    assert model.calls == iters and trainer.total_iters == iters
    assert trainer.train_seconds == pytest.approx(iters)
    assert trainer.stopped == ('time', iters) and trainer.current_epoch == 1
    assert trainer.done == iters


def test_a_part_sees_every_iteration_and_its_time_is_not_training_time(clock):
    model = SlowModel(clock)
    seen = []

    class Slow(Part):
        def iteration(self, tr):
            seen.append((tr.total_iters, float(tr.loss)))
            clock.now += 10.0                  # e.g. a validation run

    trainer = RnnlmTrainer(model, SGD(0.1), parts=[Slow()])
    corpus = np.arange(101)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=2, batch_size=2, time_size=5, eval_interval=0)
    assert seen == [(i, 1.0) for i in range(1, 21)]            # 2 epochs x 10 iterations
    assert trainer.train_seconds == pytest.approx(20.0)
    assert trainer.tokens_per_sec == pytest.approx(10 * 2 * 5 / 10.0)
    assert trainer.stopped is None

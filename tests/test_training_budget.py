"""The trainer's time budget and per-iteration parts, validation inside an
epoch, and the extra metadata of saved parameters. Time is a fake clock here:
nothing in these tests depends on the machine's speed."""
import json

import numpy as np
import pytest

import common.trainer as trainer_module
from ch_gru.rnnlm import Rnnlm, load_model
from common.run.fileio import load_npz
from common.optimizer import SGD, Adam
from common.run.parts import Part, TimeBudget
from common.run.settings import TrainSettings
from common.trainer import RnnlmTrainer
from common.run.loop import train_with_validation


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


def small_run(tmp_path, name, lr_decay=4.0, **kwargs):
    rng = np.random.RandomState(0)
    corpus = rng.randint(0, 12, 3000).astype(np.int32)
    np.random.seed(5)
    model = Rnnlm(12, 8, 8, num_layers=2, dropout_ratio=0.0, tie_weights=False)
    out = tmp_path / name
    out.mkdir()
    settings = TrainSettings(max_epoch=2, batch_size=4, time_size=10, max_grad=1.0, eval_interval=0,
                             out_dir=str(out), eval_batch_size=4, unit='char', lr_decay=lr_decay, **kwargs)
    result = train_with_validation(model, Adam(0.01), (corpus[:2401], corpus[2401:], None), settings)
    return model, result, [json.loads(line) for line in open(out / 'log.jsonl')]


def test_validation_inside_an_epoch_does_not_disturb_training(tmp_path):
    """With the same seed, a run that evaluates every 7 iterations ends with
    exactly the parameters of a run that does not: the recurrent state is put
    aside and restored around each evaluation (eval batch = train batch, so a
    leaked state would be carried into training)."""
    plain, plain_result, _ = small_run(tmp_path, 'plain')
    tracked, result, log = small_run(tmp_path, 'tracked', valid_interval=7)
    for a, b in zip(plain.params, tracked.params):
        np.testing.assert_array_equal(a, b)
    evals = [r for r in log if r['event'] == 'eval']
    assert [r['iter'] for r in evals] == [7, 14, 21, 28, 35, 42, 49, 56, 60, 63, 70, 77, 84, 91, 98, 105, 112,
                                          119, 120]
    epochs = [r for r in log if r['event'] == 'epoch']
    assert [e['valid_ppl'] for e in epochs] == plain_result['history']['valid']
    assert epochs[0]['valid_ppl'] == next(r['valid_ppl'] for r in evals if r['iter'] == 60)
    assert (tmp_path / 'tracked' / 'curve.png').read_bytes()[:4] == b'\x89PNG'
    assert not (tmp_path / 'plain' / 'curve.png').exists()


def test_time_budget_ends_training_inside_an_epoch(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(trainer_module.time, 'perf_counter', clock)
    original = Rnnlm.forward

    def slow_forward(self, xs, ts, train_flg=True):
        if train_flg:
            clock.now += 1.0
        return original(self, xs, ts, train_flg)
    monkeypatch.setattr(Rnnlm, 'forward', slow_forward)
    _, result, log = small_run(tmp_path, 'budget', max_seconds=75.0, valid_interval=30)
    epochs = [r for r in log if r['event'] == 'epoch']
    assert [(e['iters'], e['partial']) for e in epochs] == [(60, False), (15, True)]
    assert log[-1]['event'] == 'end' and log[-1]['train_seconds'] == pytest.approx(75.0)
    assert log[-1]['iters'] == 75 and result['train_seconds'] == pytest.approx(75.0)
    assert [r['iter'] for r in log if r['event'] == 'eval'] == [30, 60, 75]


def test_saved_parameters_carry_extra_metadata(tmp_path):
    model = Rnnlm(5, 4, 4, num_layers=1)
    path = model.save_params(str(tmp_path / 'm.npz'), vocab=list('abcde'),
                             meta={'text': {'level': 'char'}, 'config': {'vocab_size': 99}})
    _, meta = load_npz(path)
    assert meta['text'] == {'level': 'char'} and meta['vocab'] == list('abcde')
    assert meta['config']['vocab_size'] == 5                     # extra metadata never overrides the model's
    loaded, meta = load_model(path)
    assert loaded.config == model.config


def test_get_state_and_set_state_round_trip():
    for cell in ('gru', 'lstm'):
        model = Rnnlm(6, 4, 3, num_layers=2, cell=cell, tie_weights=False)
        model.predict(np.random.RandomState(0).randint(0, 6, (2, 5)))
        state = model.get_state()
        before = model.predict(np.array([[1], [2]]))
        model.reset_state()
        model.set_state(state)
        np.testing.assert_array_equal(model.predict(np.array([[1], [2]])), before)


def test_learning_rate_factor_after_every_epoch(tmp_path):
    _, result, log = small_run(tmp_path, 'factor', lr_epoch_factor=0.5, lr_decay=3.0)
    e1, e2 = (r for r in log if r['event'] == 'epoch')
    assert e1['lr'] == 0.01 and e2['valid_ppl'] < e1['valid_ppl']      # improved: only the factor applies
    assert e2['lr'] == pytest.approx(0.01 * 0.5)

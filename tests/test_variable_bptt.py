"""Variable-length truncated BPTT (common.batching.variable_bptt): AWD-LSTM's window lengths, the
book's batching with them, the learning rate scaled for one update only."""
import numpy as np
import pytest

from ch_gru.rnnlm import Rnnlm
from common.optimizer import SGD
from common.batching.variable_bptt import VariableBpttTrainer, window_lengths


def test_window_lengths_follow_awd_lstm():
    lengths = window_lengths(np.random.default_rng(0), 20000, 35)
    assert lengths.min() >= 5
    assert lengths.mean() == pytest.approx(0.95 * 35 + 0.05 * 17.5 - 0.5, abs=0.3)
    # P(L < 26) = 0.95 Φ(−9/5) + 0.05 Φ(8.5/5): mostly the T/2 windows
    assert (lengths < 26).mean() == pytest.approx(0.95 * 0.0359 + 0.05 * 0.9554, abs=0.006)
    assert window_lengths(np.random.default_rng(0), 50, 3).min() == 3


class Recorder(SGD):
    def __init__(self, lr):
        super().__init__(lr)
        self.rates = []

    def update(self, params, grads):
        self.rates.append(self.lr)
        super().update(params, grads)


def test_variable_bptt_windows_advance_together_and_scale_the_learning_rate():
    np.random.seed(0)
    model = Rnnlm(11, 4, 4, num_layers=1, dropout_ratio=0.0)
    shapes, starts = [], []
    forward = model.forward

    def spy(xs, ts, train_flg=True):
        shapes.append(xs.shape)
        starts.append(xs[:, 0].copy())
        return forward(xs, ts, train_flg)

    model.forward = spy
    opt = Recorder(2.0)
    trainer = VariableBpttTrainer(model, opt, parts=[], seed=5)
    corpus = np.arange(2001) % 11
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=10, eval_interval=0)
    lengths = [s[1] for s in shapes]
    assert len(lengths) == 2000 // 40 and len(set(lengths)) > 3 and all(s[0] == 4 for s in shapes)
    np.testing.assert_allclose(opt.rates, [2.0 * L / 10 for L in lengths])
    assert opt.lr == 2.0                                  # restored after every update
    offsets = np.arange(4) * 500
    expected = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for s, start in zip(starts, expected):
        np.testing.assert_array_equal(s, corpus[offsets + start])
    again = window_lengths(np.random.default_rng([5, 0]), len(lengths), 10)
    np.testing.assert_array_equal(again, lengths)          # a resumed epoch finds the same windows


def test_variable_bptt_leaves_the_learning_rate_alone_between_calls():
    """get_batch reads a window and nothing else; the scaled rate exists only inside update(), even when
    the update fails."""
    np.random.seed(0)
    model = Rnnlm(11, 4, 4, num_layers=1, dropout_ratio=0.0)
    opt = Recorder(2.0)
    trainer = VariableBpttTrainer(model, opt, parts=[], seed=5)
    corpus = np.arange(2001) % 11
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=10, eval_interval=0)
    trainer.iteration = 3
    xs, _ = trainer.get_batch(corpus[:-1], corpus[1:], 4, 10)
    assert opt.lr == 2.0 and xs.shape == (4, int(trainer.lengths[3]))
    model.forward(xs, corpus[1:][:xs.size].reshape(xs.shape))
    model.backward()
    trainer.update()
    assert opt.rates[-1] == 2.0 * int(trainer.lengths[3]) / 10 and opt.lr == 2.0

    def fail(params, grads):
        raise FloatingPointError('on purpose')

    opt.update = fail
    with pytest.raises(FloatingPointError):
        trainer.update()
    assert opt.lr == 2.0

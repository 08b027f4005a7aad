"""ch_gru/figures.py: the exact ∂L/∂h_t against finite differences of
step-by-step references, the gates against their equations, the run-log reader."""
import json

import numpy
import pytest

from ch_gru import figures
from ch_gru.rnnlm import Rnnlm
from common.errors import ConfigError, DataError
from common.gradcheck import assert_close, gru_reference, lstm_reference, numerical_gradient, sigmoid


def tiny(cell, layers=1, seed=0):
    numpy.random.seed(seed)
    return Rnnlm(11, 4, 5, num_layers=layers, dropout_ratio=0.0, cell=cell, tie_weights=False, dtype='float64')


def batch(seed=1, N=3, T=6, V=11):
    rng = numpy.random.default_rng(seed)
    return rng.integers(0, V, size=(N, T)).astype(numpy.int32), rng.integers(0, V, size=N).astype(numpy.int32)


def rnn_reference(xs, Wx, Wh, b, h0=None):
    h = numpy.zeros((xs.shape[0], Wh.shape[0])) if h0 is None else h0
    out = []
    for t in range(xs.shape[1]):
        h = numpy.tanh(xs[:, t] @ Wx + h @ Wh + b)
        out.append(h)
    return numpy.stack(out, axis=1)


def lstm_state(xs, Wx, Wh, b):
    """(h_T, c_T) of the book's LSTM after xs, one step at a time."""
    N, H = xs.shape[0], Wh.shape[0]
    h, c = numpy.zeros((N, H)), numpy.zeros((N, H))
    for t in range(xs.shape[1]):
        a = xs[:, t] @ Wx + h @ Wh + b
        f, g, i, o = sigmoid(a[:, :H]), numpy.tanh(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c = f * c + g * i
        h = o * numpy.tanh(c)
    return h, c


def cross_entropy(scores, targets):
    s = scores - scores.max(axis=1, keepdims=True)
    logp = s - numpy.log(numpy.exp(s).sum(axis=1, keepdims=True))
    return -logp[numpy.arange(len(targets)), targets].mean()


@pytest.mark.parametrize('cell', ['gru', 'rnn', 'lstm'])
@pytest.mark.parametrize('t', [0, 2, 5])
def test_the_state_gradient_is_the_finite_difference_of_a_step_by_step_reference(cell, t):
    model = tiny(cell)
    xs, targets = batch()
    analytic = figures.state_gradient(model, xs, targets, t)[0]
    E = model.embed.params[0][xs]
    Wx, Wh, b = model.rnn_layers[0].params
    Wa, ba = model.affine.params
    if cell == 'gru':
        run = lambda x, h0: gru_reference(x, Wx, Wh, b, h0=h0)                 # noqa: E731
    elif cell == 'rnn':
        run = lambda x, h0: rnn_reference(x, Wx, Wh, b, h0=h0)                 # noqa: E731
    else:
        h_t, c_t = lstm_state(E[:, :t], Wx, Wh, b)                               # c_t held fixed
        run = lambda x, h0: lstm_reference(x, Wx, Wh, b, h0=h0, c0=c_t)        # noqa: E731
    h = (h_t.copy() if cell == 'lstm' else run(E[:, :t], None)[:, -1].copy()) if t else numpy.zeros((3, 5))
    numeric = numerical_gradient(lambda: cross_entropy(run(E[:, t:], h)[:, -1] @ Wa + ba, targets), h)
    assert numpy.abs(numeric).max() > 1e-6           # a real gradient, not two zeros
    assert_close(analytic, numeric, f'{cell} dL/dh_{t}')


def test_the_split_forward_gives_the_loss_of_the_whole_window():
    model = tiny('lstm', layers=2)
    xs, targets = batch()
    whole = float(figures._last_step_backward(model, xs, targets))
    model.reset_state()
    figures._recurrent(model, xs[:, :3])
    split = float(figures._last_step_backward(model, xs[:, 3:], targets))
    assert split == pytest.approx(whole, rel=1e-12)
    model.reset_state()
    scores = model.predict(xs)[:, -1]
    assert whole == pytest.approx(cross_entropy(scores, targets), rel=1e-12)


def test_the_norms_are_the_per_window_norms_of_the_state_gradients():
    model = tiny('gru', layers=2)
    xs, targets = batch(N=4, T=5)
    norms = figures.state_gradient_norms(model, xs, targets)
    assert list(norms) == ['h'] and norms['h'].shape == (2, 5)
    for t in range(5):
        for i, dh in enumerate(figures.state_gradient(model, xs, targets, t)):
            assert norms['h'][i, t] == pytest.approx(float((4 * numpy.linalg.norm(dh, axis=1)).mean()), rel=1e-10)


def test_an_lstm_has_the_norms_of_its_cell_state_too():
    model = tiny('lstm')
    xs, targets = batch(N=4, T=5)
    norms = figures.state_gradient_norms(model, xs, targets)
    assert sorted(norms) == ['c', 'h']
    figures.state_gradient(model, xs, targets, 2)
    dc = model.rnn_layers[0].dc
    assert norms['c'][0, 2] == pytest.approx(float((4 * numpy.linalg.norm(dc, axis=1)).mean()), rel=1e-10)
    assert not numpy.allclose(norms['c'], norms['h'])


def test_a_contracting_rnn_loses_its_gradient_and_a_closed_update_gate_keeps_it():
    xs, targets = batch(N=8, T=25)
    rnn = tiny('rnn')
    rnn.rnn_layers[0].params[1] *= 0.3              # ‖Wh‖ < 1 and tanh' <= 1: every step shrinks dh
    norms = figures.state_gradient_norms(rnn, xs, targets)['h'][0]
    assert norms[0] < 1e-6 * norms[-1]
    assert numpy.all(numpy.diff(norms) > 0)
    gru = tiny('gru')
    H = 5
    gru.rnn_layers[0].params[2][:H] = -12.0         # z ≈ 6e-6: h' ≈ h, the state is copied through
    norms = figures.state_gradient_norms(gru, xs, targets)['h'][0]
    assert norms[0] == pytest.approx(norms[-1], rel=0.01)


def test_the_gates_are_the_gru_equations_over_the_passage():
    model = tiny('gru', layers=2)
    ids = numpy.array([1, 4, 2, 9, 0, 3, 3, 7], dtype=numpy.int32)
    for layer in (0, 1):
        z, r = figures.gates_over_text(model, ids, layer=layer)
        assert z.shape == r.shape == (8, 5)
        assert z.min() >= 0 and z.max() <= 1 and r.min() >= 0 and r.max() <= 1
        x = model.embed.params[0][ids][None]
        if layer == 1:
            l0 = model.rnn_layers[0].params
            x = gru_reference(x, *l0)
        Wx, Wh, b = model.rnn_layers[layer].params
        hs = gru_reference(x, Wx, Wh, b)[0]
        h_prev = numpy.vstack([numpy.zeros((1, 5)), hs[:-1]])
        x = x[0]
        assert_close(z, sigmoid(x @ Wx[:, :5] + h_prev @ Wh[:, :5] + b[:5]), 'z')
        assert_close(r, sigmoid(x @ Wx[:, 5:10] + h_prev @ Wh[:, 5:10] + b[5:10]), 'r')
    assert model.rnn_layers[0].h is None             # the state is reset after


def test_gates_need_a_gru_layer_that_exists():
    with pytest.raises(ConfigError, match='not a TimeGRU'):
        figures.gates_over_text(tiny('lstm'), [1, 2])
    with pytest.raises(ConfigError, match='1 recurrent layer'):
        figures.gates_over_text(tiny('gru'), [1, 2], layer=1)
    with pytest.raises(ConfigError, match='outside the window'):
        figures.state_gradient(tiny('gru'), *batch(T=4), 4)


def test_most_varying_units_and_windows():
    gates = numpy.zeros((10, 4))
    gates[:, 1] = numpy.linspace(0, 1, 10)
    gates[:, 3] = numpy.linspace(0, 0.5, 10)
    assert figures.most_varying(gates, 2).tolist() == [1, 3]
    corpus = numpy.arange(100)
    xs, targets = figures.windows(corpus, 6, 10, seed=3)
    assert xs.shape == (6, 10) and numpy.all(targets == xs[:, -1] + 1)
    with pytest.raises(DataError, match='fewer than a window'):
        figures.windows(corpus[:10], 2, 10)


def test_a_brief_training_lowers_the_loss():
    model = tiny('gru')
    corpus = numpy.tile(numpy.arange(11, dtype=numpy.int32), 60)
    xs, targets = figures.windows(corpus, 8, 5)
    before = float(figures._last_step_backward(model, xs, targets))
    figures.train_briefly(model, corpus, iters=30, batch_size=4, time_size=5, lr=0.05)
    model.reset_state()
    after = float(figures._last_step_backward(model, xs, targets))
    assert after < 0.5 * before
    with pytest.raises(DataError, match='need 1001 tokens'):
        figures.train_briefly(model, corpus[:100], iters=10, batch_size=10, time_size=10)


def write_log(path, records):
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))
    return str(path)


def test_read_run_log(tmp_path):
    epoch = dict(event='epoch', train_ppl=300.0, valid_ppl=250.0, train_seconds=10.0)
    path = write_log(tmp_path / 'log.jsonl', [
        dict(event='start', model='m', args={'recipe': 'regularised'}),
        {**epoch, 'epoch': 1}, {**epoch, 'epoch': 2, 'valid_ppl': 200.0},
        dict(event='resume', epoch=1), {**epoch, 'epoch': 2, 'valid_ppl': 190.0, 'train_seconds': 21.0},
        dict(event='end', test_ppl=180.0)])
    curve = figures.read_run_log(path)
    assert curve == {'epoch': [1, 2], 'seconds': [10.0, 21.0], 'train': [300.0, 300.0], 'valid': [250.0, 190.0],
                     'recipe': 'regularised'}
    with pytest.raises(DataError, match='cannot read the run log'):
        figures.read_run_log(str(tmp_path / 'missing.jsonl'))
    (tmp_path / 'bad.jsonl').write_text('not json\n')
    with pytest.raises(DataError, match='is not a run log'):
        figures.read_run_log(str(tmp_path / 'bad.jsonl'))
    with pytest.raises(DataError, match='no finished epoch'):
        figures.read_run_log(write_log(tmp_path / 'empty.jsonl', [dict(event='start')]))

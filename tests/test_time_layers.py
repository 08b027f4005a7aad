"""The book's layers of common/time_layers.py that the Time layers above do
not cover: the per-step cells (RNN, LSTM, GRU), TimeBiLSTM, TimeSigmoidWithLoss,
the Simple_* layers, and what ``from common.time_layers import *`` gives.

The references here are the book's per-step formulas written out in NumPy."""
import json

import numpy as np
import pytest

from common import layers
from common.functions import sigmoid
from common.gradcheck import assert_close, check_layer, gru_reference, numerical_gradient
from common.time_layers import (GRU, LSTM, RNN, Simple_TimeAffine, Simple_TimeSoftmaxWithLoss, TimeAffine,
                                TimeBiLSTM, TimeGRU, TimeLSTM, TimeRNN, TimeSigmoidWithLoss, TimeSoftmaxWithLoss)
from helpers.processes import run_python


def randn(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def s(x):
    return 1 / (1 + np.exp(-x))


# -- the book's per-step formulas ----------------------------------------------------

def rnn_step(x, h, Wx, Wh, b, dh_next):
    """h' = tanh(h Wh + x Wx + b) and its backward: (h', dx, dh, [dWx, dWh, db])."""
    h_next = np.tanh(h @ Wh + x @ Wx + b)
    dt = dh_next * (1 - h_next ** 2)
    return h_next, dt @ Wx.T, dt @ Wh.T, [x.T @ dt, h.T @ dt, dt.sum(axis=0)]


def lstm_step(x, h, c, Wx, Wh, b, dh_next, dc_next):
    """The book's LSTM cell (f | g | i | o): (h', c', dx, dh, dc, [dWx, dWh, db])."""
    H = h.shape[1]
    A = x @ Wx + h @ Wh + b
    f, g, i, o = s(A[:, :H]), np.tanh(A[:, H:2 * H]), s(A[:, 2 * H:3 * H]), s(A[:, 3 * H:])
    c_next = f * c + g * i
    h_next = o * np.tanh(c_next)
    tc = np.tanh(c_next)
    ds = dc_next + dh_next * o * (1 - tc ** 2)
    dA = np.hstack((ds * c * f * (1 - f), ds * i * (1 - g ** 2), ds * g * i * (1 - i), dh_next * tc * o * (1 - o)))
    return h_next, c_next, dA @ Wx.T, dA @ Wh.T, ds * f, [x.T @ dA, h.T @ dA, dA.sum(axis=0)]


def gru_step(x, h, Wx, Wh, b, dh_next):
    """The book's GRU cell (appendix C, z | r | h̃) with the biases: (h', dx, dh, [dWx, dWh, db])."""
    H = h.shape[1]
    (Wxz, Wxr, Wxh), (Whz, Whr, Whh) = np.split(Wx, 3, axis=1), np.split(Wh, 3, axis=1)
    bz, br, bh = np.split(b, 3)
    z, r = s(x @ Wxz + h @ Whz + bz), s(x @ Wxr + h @ Whr + br)
    hh = np.tanh(x @ Wxh + (r * h) @ Whh + bh)
    h_next = (1 - z) * h + z * hh
    dt_h = dh_next * z * (1 - hh ** 2)
    dhr = dt_h @ Whh.T
    dt_z = (dh_next * hh - dh_next * h) * z * (1 - z)
    dt_r = dhr * h * r * (1 - r)
    dx = dt_h @ Wxh.T + dt_z @ Wxz.T + dt_r @ Wxr.T
    dh = dh_next * (1 - z) + r * dhr + dt_z @ Whz.T + dt_r @ Whr.T
    dts = np.hstack((dt_z, dt_r, dt_h))
    dWh = np.hstack((h.T @ dt_z, h.T @ dt_r, (r * h).T @ dt_h))
    assert H == Wh.shape[0]
    return h_next, dx, dh, [x.T @ dts, dWh, dts.sum(axis=0)]


def cell_params(rng, D, H, gates):
    return [randn(rng, D, gates * H, scale=0.5), randn(rng, H, gates * H, scale=0.5), randn(rng, gates * H)]


# -- the cells -------------------------------------------------------------------------

@pytest.mark.parametrize('Cell,gates,step', [(RNN, 1, rnn_step), (GRU, 3, gru_step)])
def test_cell_is_the_books_step(rng, Cell, gates, step):
    N, D, H = 3, 4, 5
    params = cell_params(rng, D, H, gates)
    x, h, dh_next = randn(rng, N, D), randn(rng, N, H), randn(rng, N, H)
    cell = Cell(*params)
    h_next = cell.forward(x, h)
    dx, dh_prev = cell.backward(dh_next)
    ref_h, ref_dx, ref_dh, ref_grads = step(x, h, *params, dh_next)
    np.testing.assert_allclose(h_next, ref_h, rtol=1e-12, atol=1e-14)
    for mine, ref in [(dx, ref_dx), (dh_prev, ref_dh), *zip(cell.grads, ref_grads)]:
        np.testing.assert_allclose(mine, ref, rtol=1e-11, atol=1e-13)


def test_lstm_cell_is_the_books_step(rng):
    N, D, H = 3, 4, 5
    params = cell_params(rng, D, H, 4)
    x, h, c, dh_next, dc_next = randn(rng, N, D), randn(rng, N, H), randn(rng, N, H), randn(rng, N, H), randn(rng, N, H)
    cell = LSTM(*params)
    h_next, c_next = cell.forward(x, h, c)
    dx, dh_prev, dc_prev = cell.backward(dh_next, dc_next)
    ref_h, ref_c, ref_dx, ref_dh, ref_dc, ref_grads = lstm_step(x, h, c, *params, dh_next, dc_next)
    np.testing.assert_allclose(h_next, ref_h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_next, ref_c, rtol=1e-12, atol=1e-14)
    for mine, ref in [(dx, ref_dx), (dh_prev, ref_dh), (dc_prev, ref_dc), *zip(cell.grads, ref_grads)]:
        np.testing.assert_allclose(mine, ref, rtol=1e-11, atol=1e-13)


def test_gru_cell_is_time_gru_for_one_step(rng):
    N, D, H = 2, 3, 4
    params = cell_params(rng, D, H, 3)
    x, h = randn(rng, N, D), randn(rng, N, H)
    np.testing.assert_allclose(GRU(*params).forward(x, h), gru_reference(x[:, None], *params, h0=h)[:, 0], rtol=1e-12)


CELLS = [(RNN, 1, 1), (LSTM, 4, 2), (GRU, 3, 1)]     # cell, gate blocks, states (h, or h and c)


@pytest.mark.parametrize('Cell,gates,states', CELLS)
def test_cell_gradients(rng, Cell, gates, states):
    """Finite differences of L = Σ h_next ⊙ R (+ Σ c_next ⊙ Rc) for every input, state and parameter."""
    N, D, H = 2, 3, 4
    cell = Cell(*cell_params(rng, D, H, gates))
    inputs = [randn(rng, N, D)] + [randn(rng, N, H) for _ in range(states)]
    R = [randn(rng, N, H) for _ in range(states)]

    def outputs():
        out = cell.forward(*inputs)
        return out if states > 1 else (out,)

    def loss():
        return sum((o * r).sum() for o, r in zip(outputs(), R))

    loss()
    analytic = cell.backward(*R)
    grads = [g.copy() for g in cell.grads]
    for i, x in enumerate(inputs):
        assert_close(analytic[i], numerical_gradient(loss, x), f'input {i}')
    for i, p in enumerate(cell.params):
        assert_close(grads[i], numerical_gradient(loss, p), f'param {i}')


@pytest.mark.parametrize('Cell,gates,states', CELLS)
def test_cells_chained_as_the_book_does_are_the_time_layer(rng, Cell, gates, states):
    """The book's TimeRNN / TimeLSTM / TimeGRU loop: one cell per step, the
    gradients summed over the steps."""
    Time = {RNN: TimeRNN, LSTM: TimeLSTM, GRU: TimeGRU}[Cell]
    N, T, D, H = 2, 5, 3, 4
    params = cell_params(rng, D, H, gates)
    xs, dhs = randn(rng, N, T, D), randn(rng, N, T, H)
    layer = Time(*params)
    hs = layer.forward(xs)
    dxs = layer.backward(dhs)

    state = [np.zeros((N, H)) for _ in range(states)]
    cells, outs = [], []
    for t in range(T):
        cell = Cell(*params)
        out = cell.forward(xs[:, t], *state)
        state = list(out) if states > 1 else [out]
        cells.append(cell)
        outs.append(state[0])
    np.testing.assert_allclose(np.stack(outs, axis=1), hs, rtol=1e-12, atol=1e-14)
    d_state, sums, ref_dxs = [0] * states, [0, 0, 0], np.empty_like(xs)
    for t in reversed(range(T)):
        dx, *d_state = cells[t].backward(dhs[:, t] + d_state[0], *d_state[1:])
        ref_dxs[:, t] = dx
        sums = [a + g for a, g in zip(sums, cells[t].grads)]
    np.testing.assert_allclose(dxs, ref_dxs, rtol=1e-11, atol=1e-13)
    for mine, ref in zip(layer.grads, sums):
        np.testing.assert_allclose(mine, ref, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(layer.dh, d_state[0], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize('Cell,gates,states', CELLS)
def test_cell_gradients_are_overwritten_by_each_backward(rng, Cell, gates, states):
    N, D, H = 2, 3, 4
    cell = Cell(*cell_params(rng, D, H, gates))
    assert [p.shape for p in cell.params] == [g.shape for g in cell.grads] == [(D, gates * H), (H, gates * H),
                                                                                 (gates * H,)]
    inputs = [randn(rng, N, D)] + [randn(rng, N, H) for _ in range(states)]
    cell.forward(*inputs)
    cell.backward(*[randn(rng, N, H) for _ in range(states)])
    douts = [randn(rng, N, H) for _ in range(states)]
    cell.forward(*inputs)
    cell.backward(*douts)
    once = [g.copy() for g in cell.grads]
    fresh = Cell(*cell.params)
    fresh.forward(*inputs)
    fresh.backward(*douts)
    for a, b in zip(once, fresh.grads):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('Cell,gates,states', CELLS)
def test_cell_refuses_a_state_of_another_batch(rng, Cell, gates, states):
    cell = Cell(*cell_params(rng, 3, 4, gates))
    with pytest.raises(ValueError, match='h_prev has 5 rows but x has 2'):
        cell.forward(randn(rng, 2, 3), *[randn(rng, 5, 4) for _ in range(states)])


@pytest.mark.parametrize('Cell,gates,states', CELLS)
def test_cell_float32_in_float32_out(rng, Cell, gates, states):
    f = np.float32
    cell = Cell(*[p.astype(f) for p in cell_params(rng, 3, 4, gates)])
    out = cell.forward(randn(rng, 2, 3).astype(f), *[np.zeros((2, 4), f) for _ in range(states)])
    out = out if states > 1 else (out,)
    back = cell.backward(*[np.ones_like(o) for o in out])
    assert all(o.dtype == f for o in (*out, *back, *cell.grads))


# -- TimeGRU in the reset-after form (PyTorch's, cuDNN's) ------------------------------------

def gru_after_reference(xs, Wx, Wh, b, bh, h0):
    """h̃ = tanh(x Wxh + bxh + r ⊙ (h Whh + bhh)), z, r with b + bh, one gate at a time:
    the hidden states (N, T, H) and the activations z | r | h̃ (N, T, 3H)."""
    H = Wh.shape[0]
    (Wxz, Wxr, Wxh), (Whz, Whr, Whh) = np.split(Wx, 3, axis=1), np.split(Wh, 3, axis=1)
    (bz, br, bn), (bhz, bhr, bhn) = np.split(b, 3), np.split(bh, 3)
    h, hs, acts = h0, [], []
    for t in range(xs.shape[1]):
        x = xs[:, t]
        z = s(x @ Wxz + bz + h @ Whz + bhz)
        r = s(x @ Wxr + br + h @ Whr + bhr)
        n = np.tanh(x @ Wxh + bn + r * (h @ Whh + bhn))
        h = (1 - z) * h + z * n
        hs.append(h)
        acts.append(np.hstack((z, r, n)))
    assert h.shape[1] == H
    return np.stack(hs, axis=1), np.stack(acts, axis=1)


def gru_after_params(rng, D, H):
    return cell_params(rng, D, H, 3) + [randn(rng, 3 * H)]


def test_reset_after_gru_is_its_equations_and_caches_z_r_h(rng):
    N, T, D, H = 3, 6, 4, 5
    Wx, Wh, b, bh = gru_after_params(rng, D, H)
    xs, h0 = randn(rng, N, T, D), randn(rng, N, H)
    layer = TimeGRU(Wx, Wh, b, stateful=True, reset_after=True, bh=bh)
    assert len(layer.params) == len(layer.grads) == 4 and layer.params[3] is bh
    layer.set_state(h0)
    hs = layer.forward(xs)
    ref_hs, ref_acts = gru_after_reference(xs, Wx, Wh, b, bh, h0)
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.cache[2], ref_acts, rtol=1e-12, atol=1e-14)   # z | r | h̃, (N, T, 3H)
    np.testing.assert_array_equal(layer.h, hs[:, -1])
    # bh = 0: the two forms differ (r ⊙ (h Whh) ≠ (r ⊙ h) Whh), they are not one function
    book = TimeGRU(Wx, Wh, b).forward(xs)
    after = TimeGRU(Wx, Wh, b, reset_after=True).forward(xs)
    assert np.abs(book - after).max() > 1e-3


def test_reset_after_gru_gradients(rng):
    """Float64 finite differences for Wx, Wh, b, bh and the input, from a carried state."""
    N, T, D, H = 2, 4, 3, 4
    layer = TimeGRU(*gru_after_params(rng, D, H)[:3], stateful=True, reset_after=True, bh=randn(rng, 3 * H))
    h0 = randn(rng, N, H)
    check_layer(layer, [randn(rng, N, T, D)], rng, before=lambda: layer.set_state(h0))
    # and the gradient of the carried state
    xs, R = randn(rng, N, T, D), randn(rng, N, T, H)

    def loss():
        layer.set_state(h0)
        return (layer.forward(xs) * R).sum()

    loss()
    layer.backward(R)
    assert_close(layer.dh, numerical_gradient(loss, h0), 'dh0')


def test_reset_after_gru_carries_its_state_like_one_long_sequence(rng):
    N, T, D, H = 2, 6, 3, 4
    params = gru_after_params(rng, D, H)
    xs = randn(rng, N, T, D)
    whole = TimeGRU(*params[:3], reset_after=True, bh=params[3]).forward(xs)
    halves = TimeGRU(*params[:3], stateful=True, reset_after=True, bh=params[3])
    parts = [halves.forward(xs[:, :3]), halves.forward(xs[:, 3:])]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-12)


def test_reset_after_gru_float32(rng):
    f = np.float32
    layer = TimeGRU(*[p.astype(f) for p in gru_after_params(rng, 3, 4)[:3]], reset_after=True)
    hs = layer.forward(randn(rng, 2, 5, 3).astype(f))
    dxs = layer.backward(np.ones_like(hs))
    assert all(a.dtype == f for a in (hs, dxs, *layer.grads)) and layer.params[3].dtype == f


def test_gru_bias_options_are_checked(rng):
    from common.errors import ConfigError
    Wx, Wh, b, bh = gru_after_params(rng, 3, 4)
    with pytest.raises(ConfigError, match='reset_after=True') as exc:
        TimeGRU(Wx, Wh, b, bh=bh)
    assert '\n' not in str(exc.value)
    with pytest.raises(ConfigError, match=r'bh has shape \(5,\) but b has \(12,\)'):
        TimeGRU(Wx, Wh, b, reset_after=True, bh=bh[:5])


def test_reset_after_gru_cell_is_the_time_layer_for_one_step(rng):
    """The per-step GRU passes reset_after on: the same four parameter arrays, TimeGRU's numbers."""
    N, D, H = 2, 3, 4
    params = gru_after_params(rng, D, H)
    cell = GRU(*params[:3], reset_after=True, bh=params[3])
    assert len(cell.params) == 4 and all(a is b for a, b in zip(cell.params, params))
    x, h = randn(rng, N, D), randn(rng, N, H)
    np.testing.assert_allclose(cell.forward(x, h), gru_after_reference(x[:, None], *params, h)[0][:, 0], rtol=1e-12)
    R = randn(rng, N, H)

    def loss():
        return (cell.forward(x, h) * R).sum()

    loss()
    dx, dh = cell.backward(R)
    grads = [g.copy() for g in cell.grads]
    assert_close(dx, numerical_gradient(loss, x), 'dx')
    assert_close(dh, numerical_gradient(loss, h), 'dh')
    for i, p in enumerate(cell.params):
        assert_close(grads[i], numerical_gradient(loss, p), f'param {i}')


# -- TimeBiLSTM -------------------------------------------------------------------------------

def test_bilstm_gradients(rng):
    D, H = 3, 4
    layer = TimeBiLSTM(*cell_params(rng, D, H, 4), *cell_params(rng, D, H, 4))
    check_layer(layer, [randn(rng, 2, 5, D)], rng)


def test_bilstm_is_a_forward_and_a_reversed_lstm_side_by_side(rng):
    N, T, D, H = 2, 6, 3, 4
    p1, p2 = cell_params(rng, D, H, 4), cell_params(rng, D, H, 4)
    layer = TimeBiLSTM(*p1, *p2)
    xs, dhs = randn(rng, N, T, D), randn(rng, N, T, 2 * H)
    hs = layer.forward(xs)
    dxs = layer.backward(dhs)
    fwd, bwd = TimeLSTM(*p1), TimeLSTM(*p2)
    np.testing.assert_array_equal(hs[:, :, :H], fwd.forward(xs))
    np.testing.assert_allclose(hs[:, :, H:], bwd.forward(xs[:, ::-1].copy())[:, ::-1], rtol=1e-14)
    ref = fwd.backward(dhs[:, :, :H].copy()) + bwd.backward(dhs[:, ::-1, H:].copy())[:, ::-1]
    np.testing.assert_allclose(dxs, ref, rtol=1e-12)
    assert len(layer.params) == 6 and all(a is b for a, b in zip(layer.params, [*p1, *p2]))
    for mine, ref in zip(layer.grads, fwd.grads + bwd.grads):
        np.testing.assert_allclose(mine, ref, rtol=1e-12)


# -- losses and the Simple_* layers -----------------------------------------------------------

def test_time_sigmoid_with_loss_is_the_books_per_step_mean(rng):
    N, T = 4, 5
    xs, ts = randn(rng, N, T, scale=2), rng.integers(0, 2, (N, T))
    layer = TimeSigmoidWithLoss()
    loss = float(layer.forward(xs, ts))
    dxs = layer.backward(2.0)
    # the book: SigmoidWithLoss at every step (mean over N of -log y[t], 1e-7 in the log), mean over T
    y = s(xs)
    per_step = [-np.mean(np.log(np.where(ts[:, t] == 1, y[:, t], 1 - y[:, t]) + 1e-7)) for t in range(T)]
    assert loss == pytest.approx(np.mean(per_step), rel=1e-5)   # the book's 1e-7 adds ≈ 1e-7 / p to a term
    exact = -np.mean(ts * np.log(y) + (1 - ts) * np.log(1 - y))
    assert loss == pytest.approx(exact, rel=1e-12)
    ref_dxs = np.stack([(y[:, t] - ts[:, t]) * (2.0 / T) / N for t in range(T)], axis=1)
    np.testing.assert_allclose(dxs, ref_dxs, rtol=1e-12)
    check_layer(TimeSigmoidWithLoss(), [xs, ts], rng)


def test_simple_time_affine_is_the_books_per_step_affine(rng):
    N, T, D, M = 2, 4, 3, 5
    W, b, xs, dout = randn(rng, D, M), randn(rng, M), randn(rng, N, T, D), randn(rng, N, T, M)
    layer = Simple_TimeAffine(W, b)
    out = layer.forward(xs)
    dxs = layer.backward(dout)
    steps = [layers.Affine(W, b) for _ in range(T)]
    ref_out = np.stack([a.forward(xs[:, t]) for t, a in enumerate(steps)], axis=1)
    ref_dxs = np.stack([a.backward(dout[:, t]) for t, a in enumerate(steps)], axis=1)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12)
    np.testing.assert_allclose(dxs, ref_dxs, rtol=1e-12)
    np.testing.assert_allclose(layer.dW, sum(a.grads[0] for a in steps), rtol=1e-12)
    np.testing.assert_allclose(layer.db, sum(a.grads[1] for a in steps), rtol=1e-12)
    assert layer.W is W and layer.b is b and layer.dW is layer.grads[0] and layer.db is layer.grads[1]
    plain = TimeAffine(W, b)
    np.testing.assert_array_equal(plain.forward(xs), out)
    np.testing.assert_array_equal(plain.backward(dout), dxs)
    check_layer(Simple_TimeAffine(W, b), [xs], rng)


def test_simple_time_softmax_with_loss_is_the_books_per_step_mean(rng):
    N, T, V = 3, 4, 6
    xs, ts = randn(rng, N, T, V, scale=2), rng.integers(0, V, (N, T))
    layer = Simple_TimeSoftmaxWithLoss()
    loss = float(layer.forward(xs, ts))
    dxs = layer.backward(0.5)
    steps = [layers.SoftmaxWithLoss() for _ in range(T)]
    ref_loss = sum(float(a.forward(xs[:, t], ts[:, t])) for t, a in enumerate(steps)) / T
    ref_dxs = np.stack([a.backward(0.5 / T) for a in steps], axis=1)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(dxs, ref_dxs, rtol=1e-12)
    # with no label ignored, the same as TimeSoftmaxWithLoss
    plain = TimeSoftmaxWithLoss()
    assert loss == pytest.approx(float(plain.forward(xs, ts)), rel=1e-12)
    np.testing.assert_allclose(plain.backward(0.5), dxs, rtol=1e-12)
    # one-hot labels give the same; -1 is the last class, as in the book (no ignore_label)
    assert float(Simple_TimeSoftmaxWithLoss().forward(xs, np.eye(V)[ts])) == pytest.approx(loss, rel=1e-12)
    last = np.where(ts == 0, -1, ts)
    assert (float(Simple_TimeSoftmaxWithLoss().forward(xs, last))
            == pytest.approx(float(Simple_TimeSoftmaxWithLoss().forward(xs, np.where(ts == 0, V - 1, ts))), rel=1e-12))
    check_layer(Simple_TimeSoftmaxWithLoss(), [xs, ts], rng)


# -- the module's names ------------------------------------------------------------------------

BOOK_TIME_LAYERS_NAMES = [   # what the book's `from common.time_layers import *` gives
    'np', 'GPU', 'softmax', 'sigmoid', 'cross_entropy_error',
    'MatMul', 'Affine', 'Softmax', 'SoftmaxWithLoss', 'Sigmoid', 'SigmoidWithLoss', 'Dropout', 'Embedding',
    'RNN', 'TimeRNN', 'LSTM', 'TimeLSTM', 'TimeEmbedding', 'TimeAffine', 'TimeSoftmaxWithLoss', 'TimeDropout',
    'TimeBiLSTM', 'TimeSigmoidWithLoss', 'GRU', 'TimeGRU', 'Simple_TimeSoftmaxWithLoss', 'Simple_TimeAffine']


def test_star_import_gives_what_the_books_module_gives():
    import common.time_layers
    namespace = {}
    exec('from common.time_layers import *', namespace)
    missing = [n for n in BOOK_TIME_LAYERS_NAMES if n not in namespace]
    assert not missing, missing
    assert namespace['np'] is np and namespace['GPU'] is False and namespace['sigmoid'] is sigmoid
    assert namespace['Affine'] is layers.Affine and namespace['TimeBiLSTM'] is TimeBiLSTM
    # and nothing private or internal: every name is public API
    assert set(namespace) - {'__builtins__'} == set(common.time_layers.__all__)
    assert not {'backend', 'kernels'} & set(namespace)


# -- the GPU path --------------------------------------------------------------------------------

GPU_PROGRAM = r'''
import json
import numpy
from common import backend
from common.time_layers import (GRU, LSTM, RNN, Simple_TimeAffine, Simple_TimeSoftmaxWithLoss, TimeBiLSTM,
                                TimeSigmoidWithLoss)

rng = numpy.random.default_rng(0)
def dev(*shape):
    return backend.asarray(rng.standard_normal(shape).astype('float32'))
def host(xs):
    return [backend.asnumpy(x).tolist() for x in xs]

N, T, D, H, V = 2, 3, 4, 5, 6
out = {}
for name, Cell, gates, states in (('rnn', RNN, 1, 1), ('lstm', LSTM, 4, 2), ('gru', GRU, 3, 1)):
    cell = Cell(dev(D, gates * H), dev(H, gates * H), dev(gates * H))
    y = cell.forward(dev(N, D), *[dev(N, H) for _ in range(states)])
    y = y if states > 1 else (y,)
    out[name] = host([*y, *cell.backward(*[dev(N, H) for _ in range(states)]), *cell.grads])
bi = TimeBiLSTM(dev(D, 4 * H), dev(H, 4 * H), dev(4 * H), dev(D, 4 * H), dev(H, 4 * H), dev(4 * H))
out['bilstm'] = host([bi.forward(dev(N, T, D)), bi.backward(dev(N, T, 2 * H)), *bi.grads])
sig = TimeSigmoidWithLoss()
ts = backend.asarray(rng.integers(0, 2, (N, T)))
out['sigmoid_loss'] = host([sig.forward(dev(N, T), ts), sig.backward()])
affine = Simple_TimeAffine(dev(D, V), dev(V))
out['affine'] = host([affine.forward(dev(N, T, D)), affine.backward(dev(N, T, V)), affine.dW, affine.db])
soft = Simple_TimeSoftmaxWithLoss()
ts = backend.asarray(rng.integers(0, V, (N, T)))
out['softmax_loss'] = host([soft.forward(dev(N, T, V), ts), soft.backward()])
print(json.dumps(out))
'''


def test_new_layers_on_the_gpu_path_match_numpy():
    """The stand-in CuPy refuses host arrays and NumPy-only calls; its results
    are NumPy's, so the same program must print the same numbers, to float32
    rounding (the GRU steps run as the fused kernels there)."""
    r = run_python(GPU_PROGRAM, {'DLFS_GPU': '1'}, fake_cupy=True)
    assert r.returncode == 0, r.stderr
    on_gpu = json.loads(r.stdout.strip().splitlines()[-1])
    r = run_python(GPU_PROGRAM)
    assert r.returncode == 0, r.stderr
    on_cpu = json.loads(r.stdout.strip().splitlines()[-1])
    assert on_gpu.keys() == on_cpu.keys()
    for name in on_cpu:
        for a, b in zip(on_gpu[name], on_cpu[name]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)

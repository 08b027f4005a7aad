"""Gradients against PyTorch autograd (float64), when PyTorch is installed."""
import numpy as np
import pytest

from helpers import IN_CI

# CI installs PyTorch (.ci/run), so there the oracle must run, not skip.
torch = pytest.importorskip('torch') if not IN_CI else __import__('torch')

from common import backend  # noqa: E402
from common.time_layers import LSTM, RNN, TimeBiLSTM, TimeGRU, TimeLSTM, TimeSoftmaxWithLoss  # noqa: E402
from ch_gru.better_rnnlm import BetterRnnlm  # noqa: E402


def T(a, grad=True):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def torch_gru(xs, Wx, Wh, b, h):
    """The book's GRU equations in torch (z | r | h̃ blocks)."""
    H = Wh.shape[0]
    out = []
    for t in range(xs.shape[1]):
        a = xs[:, t] @ Wx + b
        z = torch.sigmoid(a[:, :H] + h @ Wh[:, :H])
        r = torch.sigmoid(a[:, H:2 * H] + h @ Wh[:, H:2 * H])
        hh = torch.tanh(a[:, 2 * H:] + (r * h) @ Wh[:, 2 * H:])
        h = (1 - z) * h + z * hh
        out.append(h)
    return torch.stack(out, 1)


def test_gru_against_torch_autograd(rng):
    N, Tn, D, H = 3, 6, 4, 5
    Wx, Wh, b = rng.standard_normal((D, 3 * H)) * .5, rng.standard_normal((H, 3 * H)) * .5, rng.standard_normal(3 * H)
    xs, h0, dhs = rng.standard_normal((N, Tn, D)), rng.standard_normal((N, H)), rng.standard_normal((N, Tn, H))
    layer = TimeGRU(Wx, Wh, b, stateful=True)
    layer.set_state(h0)
    hs = layer.forward(xs)
    dxs = layer.backward(dhs)

    tWx, tWh, tb, txs, th0 = T(Wx), T(Wh), T(b), T(xs), T(h0)
    ths = torch_gru(txs, tWx, tWh, tb, th0)
    (ths * T(dhs, False)).sum().backward()
    np.testing.assert_allclose(hs, ths.detach().numpy(), rtol=1e-12, atol=1e-14)
    for mine, ref in [(dxs, txs), (layer.dh, th0), *zip(layer.grads, (tWx, tWh, tb))]:
        np.testing.assert_allclose(mine, ref.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_lstm_against_torch_nn_lstm(rng):
    """torch.nn.LSTM has the same equations with gate blocks i | f | g | o."""
    N, Tn, D, H = 2, 5, 3, 4
    Wx, Wh, b = rng.standard_normal((D, 4 * H)) * .5, rng.standard_normal((H, 4 * H)) * .5, rng.standard_normal(4 * H)
    xs, dhs = rng.standard_normal((N, Tn, D)), rng.standard_normal((N, Tn, H))
    layer = TimeLSTM(Wx, Wh, b)
    hs = layer.forward(xs)
    dxs = layer.backward(dhs)

    order = np.r_[2 * H:3 * H, 0:H, H:2 * H, 3 * H:4 * H]   # ours f|g|i|o -> torch i|f|g|o
    lstm = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor(Wx[:, order].T))
        lstm.weight_hh_l0.copy_(torch.tensor(Wh[:, order].T))
        lstm.bias_ih_l0.copy_(torch.tensor(b[order]))
        lstm.bias_hh_l0.zero_()
    txs = T(xs)
    ths, _ = lstm(txs)
    (ths * T(dhs, False)).sum().backward()
    np.testing.assert_allclose(hs, ths.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dxs, txs.grad.numpy(), rtol=1e-10, atol=1e-12)
    inverse = np.argsort(order)
    np.testing.assert_allclose(layer.grads[0], lstm.weight_ih_l0.grad.numpy().T[:, inverse], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads[1], lstm.weight_hh_l0.grad.numpy().T[:, inverse], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads[2], lstm.bias_ih_l0.grad.numpy()[inverse], rtol=1e-10, atol=1e-12)


def test_softmax_loss_against_torch_cross_entropy(rng):
    N, Tn, V = 3, 5, 9
    xs = rng.standard_normal((N, Tn, V)) * 3
    ts = rng.integers(0, V, (N, Tn))
    ts[1, 2] = ts[2, 0] = -1
    layer = TimeSoftmaxWithLoss()
    loss = float(layer.forward(xs, ts))
    dxs = layer.backward()
    txs = T(xs)
    tl = torch.nn.functional.cross_entropy(txs.reshape(-1, V), torch.tensor(ts.reshape(-1)), ignore_index=-1)
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(dxs, txs.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_whole_model_against_torch(rng):
    """BetterRnnlm's loss and every gradient (tied weight included), with the
    dropout masks our layers drew applied to the torch graph."""
    V, D = 13, 6
    np.random.seed(5)
    model = BetterRnnlm(V, D, D, dropout_ratio=0.5, dtype='float64')
    xs, ts = rng.integers(0, V, (2, 4)), rng.integers(0, V, (2, 4))
    for _ in range(2):  # second window: carried state
        backend.seed(1)
        loss = float(model.forward(xs, ts))
    model.backward()

    E, Wx1, Wh1, b1, Wx2, Wh2, b2, bo = [T(p) for p in model.params]
    masks = [T(d.mask, False) for d in model.dropouts]
    h1 = T(model.rnn_layers[0].cache[1], False)     # the states carried into the second window
    h2 = T(model.rnn_layers[1].cache[1], False)
    h = E[torch.tensor(xs)] * masks[0]
    h = torch_gru(h, Wx1, Wh1, b1, h1) * masks[1]
    h = torch_gru(h, Wx2, Wh2, b2, h2) * masks[2]
    score = h @ E.T + bo
    tl = torch.nn.functional.cross_entropy(score.reshape(-1, V), torch.tensor(ts.reshape(-1)))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    for i, (mine, ref) in enumerate(zip(model.grads, (E, Wx1, Wh1, b1, Wx2, Wh2, b2, bo))):
        np.testing.assert_allclose(mine, ref.grad.numpy(), rtol=1e-9, atol=1e-13, err_msg=f'param {i}')


def test_weight_dropped_gru_against_torch_autograd(rng):
    """DropConnect on Wh: forward with Wh ⊙ M, gradient M ⊙ dL/d(Wh ⊙ M), all in torch's autograd."""
    from common.regularisation import WeightDrop
    N, Tn, D, H = 3, 5, 4, 5
    Wx, Wh, b = rng.standard_normal((D, 3 * H)) * .5, rng.standard_normal((H, 3 * H)) * .5, rng.standard_normal(3 * H)
    xs, h0, dhs = rng.standard_normal((N, Tn, D)), rng.standard_normal((N, H)), rng.standard_normal((N, Tn, H))
    backend.seed(4)
    layer = WeightDrop(TimeGRU(Wx, Wh, b, stateful=True), 0.4)
    layer.layer.set_state(h0)
    hs = layer.forward(xs)
    dxs = layer.backward(dhs)
    M = T(layer.masked.mask, False)

    tWx, tWh, tb, txs = T(Wx), T(Wh), T(b), T(xs)
    ths = torch_gru(txs, tWx, tWh * M, tb, T(h0, False))
    (ths * T(dhs, False)).sum().backward()
    np.testing.assert_allclose(hs, ths.detach().numpy(), rtol=1e-12, atol=1e-14)
    for mine, ref in [(dxs, txs), *zip(layer.grads, (tWx, tWh, tb))]:
        np.testing.assert_allclose(mine, ref.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('weight_decay', [0.0, 0.05])
def test_asgd_against_torch_asgd(rng, weight_decay):
    """After the trigger our average is torch.optim.ASGD's ``ax`` with lambd=0 and t0=-1, and the
    parameters follow the same SGD steps. (torch's step k uses mu = 1 / max(1, k - 1 - t0): with AWD-LSTM's
    t0=0 the first step's weights are copied, then replaced by the second's, so its average leaves out the
    first update after the trigger; t0=-1 averages all of them, as ours does.)"""
    from common.optimizer import ASGD
    shapes = [(3, 4), (4,)]
    params = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(7)]
    mine = ASGD(0.3, nonmono=1, weight_decay=weight_decay)
    for v in (1.0, 0.5, 2.0):
        mine.observe(v)
    assert mine.averaging
    tparams = [T(p.copy(), False).requires_grad_() for p in params]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)            # torch keeps its step size and mu in the default dtype
    try:
        opt = torch.optim.ASGD(tparams, lr=0.3, lambd=0.0, alpha=0.75, t0=-1, weight_decay=weight_decay)
        for g in grads:
            mine.update(params, g)
            for tp, gi in zip(tparams, g):
                tp.grad = T(gi, False)
            opt.step()
    finally:
        torch.set_default_dtype(default)
    for p, tp, a in zip(params, tparams, mine.avg):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(a, opt.state[tp]['ax'].numpy(), rtol=1e-12)


def lstm_order(H):
    """Columns of torch's i | f | g | o blocks in our f | g | i | o order: ours = torch[..., lstm_order(H)]."""
    return np.r_[H:2 * H, 2 * H:3 * H, 0:H, 3 * H:4 * H]


def from_torch(weight_ih, weight_hh, bias_ih, bias_hh, order=slice(None)):
    """Our Wx, Wh, b of a torch layer (weights (G·H, D) and (G·H, H), two biases)."""
    host = [w.detach().double().numpy() for w in (weight_ih, weight_hh, bias_ih, bias_hh)]
    return [host[0].T[:, order].copy(), host[1].T[:, order].copy(), (host[2] + host[3])[order]]


@pytest.mark.parametrize('dtype,rtol,atol', [(np.float32, 2e-5, 2e-6), (np.float64, 1e-10, 1e-12)])
def test_bilstm_against_torch_bidirectional_lstm(rng, dtype, rtol, atol):
    """TimeBiLSTM is torch.nn.LSTM(bidirectional=True): our Wx1, Wh1, b1 the
    forward direction's weights, Wx2, Wh2, b2 the reverse one's, forward and
    backward, to the rounding of the dtype."""
    N, Tn, D, H = 3, 6, 4, 5
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(D, H, batch_first=True, bidirectional=True).to(torch.float64 if dtype == np.float64
                                                                        else torch.float32)
    order = lstm_order(H)
    params = [p.astype(dtype) for sfx in ('l0', 'l0_reverse') for p in from_torch(
        *(getattr(lstm, f'{name}_{sfx}') for name in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')), order)]
    layer = TimeBiLSTM(*params)
    xs, dhs = rng.standard_normal((N, Tn, D)).astype(dtype), rng.standard_normal((N, Tn, 2 * H)).astype(dtype)
    hs = layer.forward(xs)
    dxs = layer.backward(dhs)
    txs = torch.tensor(xs, requires_grad=True)
    ths, _ = lstm(txs)
    (ths * torch.tensor(dhs)).sum().backward()
    assert hs.dtype == dxs.dtype == dtype
    np.testing.assert_allclose(hs, ths.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dxs, txs.grad.numpy(), rtol=rtol, atol=atol)
    for sfx, grads in (('l0', layer.grads[:3]), ('l0_reverse', layer.grads[3:])):
        tg = [getattr(lstm, f'{name}_{sfx}').grad for name in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')]
        ref = from_torch(*tg, order)
        np.testing.assert_allclose(grads[0], ref[0], rtol=rtol, atol=atol)
        np.testing.assert_allclose(grads[1], ref[1], rtol=rtol, atol=atol)
        np.testing.assert_allclose(grads[2], tg[2].numpy()[order], rtol=rtol, atol=atol)   # = db_hh as well


@pytest.mark.parametrize('Cell', [RNN, LSTM])
def test_cells_against_torch_cells(rng, Cell):
    """RNN is torch.nn.RNNCell (tanh), LSTM torch.nn.LSTMCell with the gate
    blocks reordered; one step, gradients of x, of the states and of the weights."""
    N, D, H = 3, 4, 5
    torch.manual_seed(1)
    lstm = Cell is LSTM
    tcell = (torch.nn.LSTMCell if lstm else torch.nn.RNNCell)(D, H).double()
    order = lstm_order(H) if lstm else slice(None)
    cell = Cell(*from_torch(tcell.weight_ih, tcell.weight_hh, tcell.bias_ih, tcell.bias_hh, order))
    x, h, c = (rng.standard_normal(shape) for shape in ((N, D), (N, H), (N, H)))
    dh_next, dc_next = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    tx, th, tc = T(x), T(h), T(c)
    if lstm:
        h_next, c_next = cell.forward(x, h, c)
        grads = cell.backward(dh_next, dc_next)
        th_next, tc_next = tcell(tx, (th, tc))
        ((th_next * T(dh_next, False)).sum() + (tc_next * T(dc_next, False)).sum()).backward()
        np.testing.assert_allclose(c_next, tc_next.detach().numpy(), rtol=1e-12, atol=1e-14)
        refs = (tx, th, tc)
    else:
        h_next = cell.forward(x, h)
        grads = cell.backward(dh_next)
        th_next = tcell(tx, th)
        (th_next * T(dh_next, False)).sum().backward()
        refs = (tx, th)
    np.testing.assert_allclose(h_next, th_next.detach().numpy(), rtol=1e-12, atol=1e-14)
    for mine, ref in zip(grads, refs):
        np.testing.assert_allclose(mine, ref.grad.numpy(), rtol=1e-10, atol=1e-12)
    ref = from_torch(tcell.weight_ih.grad, tcell.weight_hh.grad, tcell.bias_ih.grad, 0 * tcell.bias_hh.grad, order)
    for mine, r in zip(cell.grads, ref):
        np.testing.assert_allclose(mine, r, rtol=1e-10, atol=1e-12)


def test_rmsprop_against_torch_rmsprop(rng):
    """The book's RMSprop adds 1e-7 after the square root, as torch.optim.RMSprop
    does with eps=1e-7 (no momentum, not centred): the same steps."""
    from common.optimizer import RMSprop
    shapes = [(3, 4), (4,)]
    params = [rng.standard_normal(s) for s in shapes]
    tparams = [T(p.copy(), False).requires_grad_() for p in params]
    mine = RMSprop(lr=0.02, decay_rate=0.9)
    opt = torch.optim.RMSprop(tparams, lr=0.02, alpha=0.9, eps=1e-7)
    for _ in range(6):
        grads = [rng.standard_normal(s) for s in shapes]
        mine.update(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = T(g, False)
        opt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)

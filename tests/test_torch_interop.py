"""ch_gru/torch_interop.py: weights to and from PyTorch's nn.GRU, nn.LSTM and
whole language models, checked against PyTorch itself (skipped without it)."""
import numpy as np
import pytest

from common.errors import ConfigError
from common.time_layers import TimeGRU, TimeLSTM
from ch_gru import torch_interop as ti
from ch_gru.better_rnnlm import BetterRnnlm
from ch_gru.rnnlm import Rnnlm
from helpers.processes import run_python

NAMES = ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')


@pytest.fixture
def torch():
    torch = pytest.importorskip('torch')
    torch.manual_seed(0)
    return torch


def run_layers(layers, xs, dhs, h0=None):
    """Our stack forward and backward: (hs, dxs, [dh0 of each layer])."""
    h = xs
    for k, layer in enumerate(layers):
        if h0 is not None:
            layer.set_state(h0[k])
        h = layer.forward(h)
    d = dhs
    for layer in reversed(layers):
        d = layer.backward(d)
    return h, d, [layer.dh for layer in layers]


def predict(model, xs):
    """Scores from a fresh state (the models' layers carry their state between calls)."""
    model.reset_state()
    return model.predict(xs)


def torch_run(torch, module, xs, dhs, h0=None, batch_first=True):
    """The module forward and backward on the same arrays: (hs, dxs, dh0) as NumPy."""
    dt = next(module.parameters()).dtype
    tx = torch.tensor(xs, dtype=dt, requires_grad=True)
    th = None if h0 is None else torch.tensor(h0, dtype=dt, requires_grad=True)
    x = tx if batch_first else tx.transpose(0, 1)
    hs, _ = module(x, th)
    hs = hs if batch_first else hs.transpose(0, 1)
    (hs * torch.tensor(dhs, dtype=dt)).sum().backward()
    return hs.detach().numpy(), tx.grad.numpy(), None if th is None else th.grad.numpy()


# -- nn.GRU ------------------------------------------------------------------------------------

@pytest.mark.parametrize('dtype,rtol', [('float64', 1e-12), ('float32', 2e-5)])
@pytest.mark.parametrize('batch_first', [True, False])
def test_torch_interop_gru_equals_nn_gru_forward_and_backward(torch, rng, dtype, rtol, batch_first):
    """TimeGRU(reset_after=True) with nn.GRU's weights: the outputs, the input
    and initial-state gradients and every weight gradient (mapped back) are
    PyTorch's, to float64 or float32 rounding."""
    N, T, D, H, L = 3, 6, 4, 5, 3
    module = torch.nn.GRU(D, H, num_layers=L, batch_first=batch_first).to(getattr(torch, dtype))
    layers = ti.from_torch_gru(module, stateful=True)
    assert len(layers) == L and all(la.reset_after and la.params[0].dtype == dtype for la in layers)
    xs, h0, dhs = (rng.standard_normal(s).astype(dtype) for s in ((N, T, D), (L, N, H), (N, T, H)))
    hs, dxs, dh0 = run_layers(layers, xs, dhs, h0)
    ref_hs, ref_dxs, ref_dh0 = torch_run(torch, module, xs, dhs, h0, batch_first)
    tol = dict(rtol=rtol, atol=rtol)
    np.testing.assert_allclose(hs, ref_hs, **tol)
    np.testing.assert_allclose(dxs, ref_dxs, **tol)
    np.testing.assert_allclose(np.stack(dh0), ref_dh0, **tol)
    for k, layer in enumerate(layers):
        for mine, name in zip(ti.gru_to_torch(*layer.grads), NAMES):
            np.testing.assert_allclose(mine, getattr(module, f'{name}_l{k}').grad.numpy(), **tol, err_msg=name)


def test_torch_interop_gru_round_trip_is_exact(torch, rng):
    module = torch.nn.GRU(3, 4, num_layers=2).double()
    again = ti.to_torch_gru(ti.from_torch_gru(module), batch_first=False)
    assert (again.num_layers, again.batch_first, again.input_size, again.hidden_size) == (2, False, 3, 4)
    for a, b in zip(module.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    # ours -> nn.GRU -> ours: the same arrays, the z block negated twice
    layer = TimeGRU(*(rng.standard_normal(s) for s in ((3, 12), (4, 12), (12,))), reset_after=True,
                    bh=rng.standard_normal(12))
    back = ti.from_torch_gru(ti.to_torch_gru([layer]))[0]
    for a, b in zip(layer.params, back.params):
        np.testing.assert_array_equal(a, b)


def test_torch_interop_gru_update_gate_is_the_complement(torch):
    """PyTorch's update gate z_pt keeps h (h' = (1 − z_pt) n + z_pt h); ours
    takes h̃: the imported z block is PyTorch's negated, so z = 1 − z_pt."""
    module = torch.nn.GRU(2, 3).double()
    Wx, Wh, b, bh = ti.gru_from_torch(*(getattr(module, f'{n}_l0').detach().numpy() for n in NAMES))
    w_iz = module.weight_ih_l0.detach().numpy()[3:6]          # rows r | z | n
    np.testing.assert_array_equal(Wx[:, :3], -w_iz.T)
    np.testing.assert_array_equal(Wx[:, 3:6], module.weight_ih_l0.detach().numpy()[:3].T)
    np.testing.assert_array_equal(bh[6:], module.bias_hh_l0.detach().numpy()[6:])


def test_torch_interop_gru_without_biases(torch, rng):
    module = torch.nn.GRU(3, 4, bias=False).double()
    layer, = ti.from_torch_gru(module)
    assert not layer.params[2].any() and not layer.params[3].any()
    xs = rng.standard_normal((2, 5, 3))
    np.testing.assert_allclose(layer.forward(xs), module(torch.tensor(xs).transpose(0, 1))[0].transpose(0, 1)
                               .detach().numpy(), rtol=1e-12, atol=1e-14)


# -- nn.LSTM -----------------------------------------------------------------------------------

@pytest.mark.parametrize('dtype,rtol', [('float64', 1e-12), ('float32', 2e-5)])
def test_torch_interop_lstm_equals_nn_lstm(torch, rng, dtype, rtol):
    N, T, D, H, L = 2, 5, 3, 4, 2
    module = torch.nn.LSTM(D, H, num_layers=L, batch_first=True).to(getattr(torch, dtype))
    layers = ti.from_torch_lstm(module)
    xs, dhs = (rng.standard_normal(s).astype(dtype) for s in ((N, T, D), (N, T, H)))
    hs, dxs, _ = run_layers(layers, xs, dhs)
    ref_hs, ref_dxs, _ = torch_run(torch, module, xs, dhs)
    np.testing.assert_allclose(hs, ref_hs, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dxs, ref_dxs, rtol=rtol, atol=rtol)
    # the one bias is the sum of PyTorch's two; its gradient is each of theirs
    b_sum = (module.bias_ih_l0 + module.bias_hh_l0).detach().double().numpy()
    np.testing.assert_allclose(np.sort(layers[0].params[2]), np.sort(b_sum), rtol=1e-6)
    for k, layer in enumerate(layers):
        w_ih, w_hh, b_ih, _ = ti.lstm_to_torch(*layer.grads)
        for mine, name in ((w_ih, 'weight_ih'), (w_hh, 'weight_hh'), (b_ih, 'bias_ih'), (b_ih, 'bias_hh')):
            np.testing.assert_allclose(mine, getattr(module, f'{name}_l{k}').grad.numpy(), rtol=rtol, atol=rtol)


def test_torch_interop_lstm_export_puts_the_bias_in_b_ih(torch, rng):
    D, H = 3, 4
    layers = [TimeLSTM(*(rng.standard_normal(s) for s in ((d, 4 * H), (H, 4 * H), (4 * H,)))) for d in (D, H)]
    module = ti.to_torch_lstm(layers, batch_first=False)
    assert module.num_layers == 2 and not module.batch_first and next(module.parameters()).dtype == torch.float64
    for k in range(2):
        assert not getattr(module, f'bias_hh_l{k}').any()
    # PyTorch's gate order i | f | g | o: its first block is our third (i)
    np.testing.assert_array_equal(module.bias_ih_l0.detach().numpy()[:H], layers[0].params[2][2 * H:3 * H])
    xs = rng.standard_normal((2, 6, D))
    hs, _, _ = run_layers(layers, xs, np.zeros((2, 6, H)))
    ref = module(torch.tensor(xs).transpose(0, 1))[0].transpose(0, 1).detach().numpy()
    np.testing.assert_allclose(hs, ref, rtol=1e-12, atol=1e-14)
    back = ti.from_torch_lstm(module)
    for a, b in zip(layers, back):
        for p, q in zip(a.params, b.params):
            np.testing.assert_array_equal(p, q)


# -- whole models ----------------------------------------------------------------------------

@pytest.mark.parametrize('cell,layers,tie', [('gru', 2, True), ('gru', 1, False), ('lstm', 3, True),
                                             ('lstm', 2, False)])
def test_torch_interop_model_predicts_the_same_logits(torch, rng, cell, layers, tie):
    np.random.seed(0)
    options = dict(reset_after=True) if cell == 'gru' else {}
    model = Rnnlm(30, 8, 8 if tie else 6, num_layers=layers, cell=cell, tie_weights=tie, **options)
    for p in model.params:                       # weights of a trained model's size, not ~0 logits
        p[...] = np.random.standard_normal(p.shape) * 0.5
    module = ti.to_torch_model(model).eval()
    assert (module.decoder.weight is module.encoder.weight) == tie
    assert next(module.parameters()).dtype == torch.float32 and module.rnn.num_layers == layers
    xs = rng.integers(0, 30, (4, 7))
    logits = predict(model, xs)
    ref, _ = module(torch.from_numpy(xs))
    np.testing.assert_allclose(logits, ref.detach().numpy(), rtol=1e-4, atol=1e-4 * np.abs(logits).max())
    back = ti.from_torch_model(module)
    assert type(back) is Rnnlm and back.config == model.config
    np.testing.assert_array_equal(predict(back, xs), logits)


def test_torch_interop_model_gradients_are_pytorchs(torch, rng):
    """Float64, no dropout: the loss and the gradients of the embedding, a GRU
    layer and the output bias are those of cross_entropy on the module."""
    np.random.seed(1)
    model = Rnnlm(12, 5, 5, num_layers=2, dropout_ratio=0.0, reset_after=True, dtype='float64')
    module = ti.to_torch_model(model)
    xs, ts = rng.integers(0, 12, (3, 6)), rng.integers(0, 12, (3, 6))
    loss = float(model.forward(xs, ts))
    model.backward()
    logits, _ = module(torch.from_numpy(xs))
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 12), torch.from_numpy(ts).reshape(-1))
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-12)
    np.testing.assert_allclose(model.embed.grads[0], module.encoder.weight.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(model.affine.grads[1], module.decoder.bias.grad.numpy(), rtol=1e-10, atol=1e-13)
    for mine, name in zip(ti.gru_to_torch(*model.rnn_layers[1].grads), NAMES):
        np.testing.assert_allclose(mine, getattr(module.rnn, f'{name}_l1').grad.numpy(), rtol=1e-10, atol=1e-13)


def test_torch_interop_better_rnnlm_comes_back_as_one(torch, rng):
    model = BetterRnnlm(20, 6, 6, reset_after=True, dtype='float64')
    module = ti.to_torch_model(model).eval()
    assert module.source == 'BetterRnnlm' and module.drop.p == 0.5 and module.rnn.dropout == 0.5
    back = ti.from_torch_model(module)
    assert type(back) is BetterRnnlm and back.config == model.config
    xs = rng.integers(0, 20, (2, 5))
    np.testing.assert_array_equal(predict(back, xs), predict(model, xs))
    np.testing.assert_allclose(predict(back, xs), module(torch.from_numpy(xs))[0].detach().numpy(), rtol=1e-12)


def test_torch_interop_reads_a_word_language_model_style_module(torch, rng):
    """PyTorch's word_language_model RNNModel: encoder, rnn (sequence first), decoder."""
    class RNNModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = torch.nn.Dropout(0.2)
            self.encoder = torch.nn.Embedding(15, 6)
            self.rnn = torch.nn.LSTM(6, 7, 2, dropout=0.2)
            self.decoder = torch.nn.Linear(7, 15)

        def forward(self, ids):
            out, _ = self.rnn(self.drop(self.encoder(ids)))
            return self.decoder(self.drop(out))

    module = RNNModel().eval()
    model = ti.from_torch_model(module, dtype='float64')
    assert model.config['tie_weights'] is False and model.config['dropout_ratio'] == pytest.approx(0.2)
    xs = rng.integers(0, 15, (3, 4))
    ref = module(torch.from_numpy(xs).T).transpose(0, 1).detach().double().numpy()
    np.testing.assert_allclose(predict(model, xs), ref, rtol=1e-5, atol=1e-6)


# -- what cannot be converted: one line, the problem and the fix ---------------------------------

def one_line(exc_info):
    message = str(exc_info.value)
    assert '\n' not in message, message
    return message


def test_torch_interop_book_form_gru_is_refused_with_the_fix(torch, rng):
    layer = TimeGRU(*(rng.standard_normal(s) for s in ((3, 12), (4, 12), (12,))))
    with pytest.raises(ConfigError) as exc:
        ti.to_torch_gru([layer])
    assert 'book-form GRU' in one_line(exc) and 'reset_after=True' in one_line(exc)
    with pytest.raises(ConfigError, match='reset_after=True'):
        ti.to_torch_model(Rnnlm(10, 4, 4))


def test_torch_interop_refuses_what_has_no_counterpart(torch, rng):
    cases = [
        (lambda: ti.from_torch_gru(torch.nn.GRU(3, 4, bidirectional=True)), 'bidirectional=False'),
        (lambda: ti.from_torch_lstm(torch.nn.LSTM(3, 4, proj_size=2)), 'proj_size=0'),
        (lambda: ti.from_torch_gru(torch.nn.LSTM(3, 4)), 'expected a torch.nn.GRU, got LSTM'),
        (lambda: ti.to_torch_gru([]), 'no layers to export'),
        (lambda: ti.to_torch_gru([TimeLSTM(np.ones((3, 16)), np.ones((4, 16)), np.ones(16))]), 'not a TimeGRU'),
        (lambda: ti.to_torch_lstm([TimeLSTM(np.ones((3, 16)), np.ones((4, 16)), np.ones(16)),
                                   TimeLSTM(np.ones((5, 16)), np.ones((4, 16)), np.ones(16))]),
         r'layer 1 has input size 5 and hidden size 4 .* Wx of shape \(4, \.\.\.\)'),
        (lambda: ti.to_torch_model(Rnnlm(10, 4, 4, cell='rnn')), "cell='gru'"),
        (lambda: ti.from_torch_model(torch.nn.GRU(3, 4)), 'encoder \\(nn.Embedding\\)'),
    ]
    for call, match in cases:
        with pytest.raises(ConfigError, match=match) as exc:
            call()
        one_line(exc)


def test_torch_interop_never_needs_torch():
    """The module imports without PyTorch; a conversion then says how to get it."""
    code = ('import sys\nsys.modules["torch"] = None\n'
            'from ch_gru import torch_interop\nimport ch_gru.rnnlm\n'
            'from common.errors import ConfigError\n'
            'try:\n    torch_interop.to_torch_gru([])\nexcept ConfigError as exc:\n    print(exc)\n')
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'PyTorch is not installed: pip install torch to convert to and from it'

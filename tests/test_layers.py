"""Every layer against finite differences in float64."""
import numpy as np
import pytest

from common import backend
from common.layers import (Affine, Dropout, Embedding, MatMul, Sigmoid, SigmoidWithLoss, Softmax,
                           SoftmaxWithLoss)
from common.time_layers import (TimeAffine, TimeDropout, TimeEmbedding, TimeGRU, TimeLSTM, TimeRNN,
                                TimeSoftmaxWithLoss)
from common.gradcheck import assert_close, check_layer, numerical_gradient


def randn(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def test_matmul(rng):
    check_layer(MatMul(randn(rng, 3, 4)), [randn(rng, 2, 3)], rng)


def test_affine(rng):
    check_layer(Affine(randn(rng, 3, 4), randn(rng, 4)), [randn(rng, 2, 3)], rng)


def test_softmax(rng):
    check_layer(Softmax(), [randn(rng, 3, 5)], rng)


def test_sigmoid(rng):
    check_layer(Sigmoid(), [randn(rng, 3, 5)], rng)


def test_softmax_with_loss(rng):
    t = np.array([0, 3, 2])
    check_layer(SoftmaxWithLoss(), [randn(rng, 3, 5), t], rng)
    onehot = np.eye(5)[t]
    x = randn(rng, 3, 5)
    assert float(SoftmaxWithLoss().forward(x, onehot)) == pytest.approx(float(SoftmaxWithLoss().forward(x, t)))


def test_sigmoid_with_loss(rng):
    check_layer(SigmoidWithLoss(), [randn(rng, 6), np.array([0, 1, 1, 0, 1, 0])], rng)


def test_sigmoid_is_stable_in_float32():
    from common.functions import sigmoid
    x = np.array([-1000, -100, 0, 100, 1000], dtype=np.float32)
    with np.errstate(over='raise', invalid='raise', divide='raise'):
        y = sigmoid(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0, 0, 0.5, 1, 1], atol=1e-7)


def test_layers_agree_with_the_books_formulas_in_float32(rng):
    """The book's Sigmoid, SigmoidWithLoss and SoftmaxWithLoss, its formulas
    written out here (its losses add 1e-7 inside the log)."""
    f, eps = np.float32, np.finfo(np.float32).eps
    x, t = (rng.standard_normal((8, 5)) * 2).astype(f), rng.integers(0, 5, 8)
    sig = Sigmoid()
    y = sig.forward(x)
    book_y = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(y, book_y, rtol=4 * eps, atol=eps)
    dout = rng.standard_normal(x.shape).astype(f)
    np.testing.assert_allclose(sig.backward(dout), dout * (1 - book_y) * book_y, rtol=1e-6, atol=eps)

    loss_layer = SoftmaxWithLoss()
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert float(loss_layer.forward(x, t)) == pytest.approx(-np.mean(np.log(p[np.arange(8), t] + 1e-7)), rel=1e-5)
    book_dx = p.copy()
    book_dx[np.arange(8), t] -= 1
    np.testing.assert_allclose(loss_layer.backward(), book_dx / 8, rtol=1e-5, atol=eps)

    z, labels = x[:, 0], rng.integers(0, 2, 8)
    bce = SigmoidWithLoss()
    q = 1 / (1 + np.exp(-z))
    book_loss = -np.mean(np.log(np.where(labels == 1, q, 1 - q) + 1e-7))    # cross_entropy_error(c_[1-y, y], t)
    assert float(bce.forward(z, labels)) == pytest.approx(book_loss, rel=1e-5)
    assert float(bce.loss) == pytest.approx(book_loss, rel=1e-5)             # the book keeps it as .loss
    np.testing.assert_allclose(bce.backward(), (q - labels) / 8, rtol=1e-5, atol=eps)


def test_star_import_gives_what_the_books_module_gives():
    import common.layers
    namespace = {}
    exec('from common.layers import *', namespace)
    book = ['np', 'GPU', 'softmax', 'cross_entropy_error', 'MatMul', 'Affine', 'Softmax', 'SoftmaxWithLoss',
            'Sigmoid', 'SigmoidWithLoss', 'Dropout', 'Embedding']
    assert not [n for n in book if n not in namespace]
    assert namespace['np'] is np and namespace['Affine'] is Affine
    assert set(namespace) - {'__builtins__'} == set(common.layers.__all__)


def test_embedding_sums_repeated_ids(rng):
    ids = np.array([[1, 3, 1], [0, 1, 3]])
    layer = Embedding(randn(rng, 5, 4))
    check_layer(layer, [ids], rng, input_grad=False)
    # three uses of id 1, none of id 2 and 4
    assert np.all(layer.grads[0][[2, 4]] == 0)


def test_time_dropout_is_inverted_dropout():
    backend.seed(0)
    layer = TimeDropout(0.3)
    x = np.ones((200, 50, 4))
    y = layer.forward(x)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)  # dx = dout ⊙ m / (1-p)
    layer.train_flg = False
    assert layer.forward(x) is x


def test_dropout_is_the_books_scaled_at_test_time(rng):
    """common.layers.Dropout as in the book: x ⊙ m in training, x · (1 - p) at test."""
    backend.seed(0)
    layer = Dropout(0.3)
    x = rng.standard_normal((400, 50)).astype(np.float32)
    y = layer.forward(x)
    kept = layer.mask != 0
    assert abs(kept.mean() - 0.7) < 0.01 and set(np.unique(layer.mask)) == {0, 1}
    np.testing.assert_array_equal(y, np.where(kept, x, 0))
    assert y.dtype == np.float32
    dout = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(dout), np.where(kept, dout, 0))
    test = layer.forward(x, train_flg=False)
    np.testing.assert_allclose(test, x * 0.7, rtol=1e-7)
    assert test.dtype == np.float32


def test_dropout_keeps_dtype():
    backend.seed(0)
    x = np.ones((3, 4, 5), dtype=np.float32)
    assert TimeDropout(0.5).forward(x).dtype == np.float32


RECURRENT = [(TimeRNN, 1), (TimeLSTM, 4), (TimeGRU, 3)]


@pytest.mark.parametrize('Layer,gates', RECURRENT)
def test_recurrent_layer_gradients(rng, Layer, gates):
    N, T, D, H = 2, 4, 3, 5
    layer = Layer(randn(rng, D, gates * H, scale=0.5), randn(rng, H, gates * H, scale=0.5),
                  randn(rng, gates * H, scale=0.5))
    check_layer(layer, [randn(rng, N, T, D)], rng)


@pytest.mark.parametrize('Layer,gates', RECURRENT)
def test_stateful_carry_matches_one_long_sequence(rng, Layer, gates):
    N, T, D, H = 2, 6, 3, 4
    params = [randn(rng, D, gates * H), randn(rng, H, gates * H), randn(rng, gates * H)]
    xs = randn(rng, N, 2 * T, D)
    whole = Layer(*params).forward(xs)
    layer = Layer(*params, stateful=True)
    first = layer.forward(xs[:, :T]).copy()
    second = layer.forward(xs[:, T:])
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-12)
    layer.reset_state()
    np.testing.assert_allclose(layer.forward(xs[:, T:]), Layer(*params).forward(xs[:, T:]), rtol=1e-12)


@pytest.mark.parametrize('Layer,gates', RECURRENT)
def test_gradient_wrt_carried_state(rng, Layer, gates):
    """Second window of a stateful layer: dh is the gradient of the carried h."""
    N, T, D, H = 2, 3, 3, 4
    layer = Layer(randn(rng, D, gates * H, scale=0.5), randn(rng, H, gates * H, scale=0.5),
                  randn(rng, gates * H), stateful=True)
    h0 = randn(rng, N, H)
    xs = randn(rng, N, T, D)
    R = randn(rng, N, T, H)

    def loss():
        layer.set_state(h0)
        if Layer is TimeLSTM:
            layer.c = np.zeros_like(h0)
        return np.sum(layer.forward(xs) * R)

    loss()
    layer.backward(R)
    assert_close(layer.dh, numerical_gradient(loss, h0), 'dh')
    # and the parameter gradients of that window
    grads = [g.copy() for g in layer.grads]
    for i, p in enumerate(layer.params):
        assert_close(grads[i], numerical_gradient(loss, p), f'param {i}')


@pytest.mark.parametrize('Layer,gates', RECURRENT)
def test_state_of_another_batch_size_is_dropped(rng, Layer, gates):
    params = [randn(rng, 3, gates * 4), randn(rng, 4, gates * 4), randn(rng, gates * 4)]
    layer = Layer(*params, stateful=True)
    layer.forward(randn(rng, 2, 3, 3))
    xs = randn(rng, 5, 3, 3)
    np.testing.assert_array_equal(layer.forward(xs), Layer(*params).forward(xs))


def test_stateless_layer_ignores_state(rng):
    layer = TimeGRU(randn(rng, 3, 12), randn(rng, 4, 12), randn(rng, 12))
    xs = randn(rng, 2, 3, 3)
    a = layer.forward(xs).copy()
    layer.set_state(randn(rng, 2, 4))
    np.testing.assert_array_equal(layer.forward(xs), a)


def test_time_embedding(rng):
    ids = np.array([[1, 3, 1, 1], [0, 1, 3, 2]])
    W = randn(rng, 5, 3)
    layer = TimeEmbedding(W)
    check_layer(layer, [ids], rng, input_grad=False)
    assert layer.W is W                                     # the book's attribute


def test_time_affine(rng):
    check_layer(TimeAffine(randn(rng, 3, 7), randn(rng, 7)), [randn(rng, 2, 4, 3)], rng)


def test_time_affine_with_transposed_weight_view(rng):
    """The tied form: W is E.T and the gradient lands in E's layout."""
    E = randn(rng, 7, 3)
    gE = np.zeros_like(E)
    layer = TimeAffine(E.T, randn(rng, 7))
    layer.grads[0] = gE.T
    check_layer(layer, [randn(rng, 2, 4, 3)], rng)
    assert np.abs(gE).sum() > 0


def test_time_softmax_with_loss_ignore_label(rng):
    N, T, V = 2, 4, 6
    xs = randn(rng, N, T, V)
    ts = rng.integers(0, V, (N, T))
    ts[0, 1] = ts[1, 3] = -1
    layer = TimeSoftmaxWithLoss()
    check_layer(layer, [xs, ts], rng)
    loss = float(layer.forward(xs, ts))
    logp = xs - np.log(np.exp(xs).sum(-1, keepdims=True))
    keep = ts != -1
    expected = -np.mean(np.take_along_axis(logp, np.where(keep, ts, 0)[..., None], -1)[..., 0][keep])
    assert loss == pytest.approx(expected, rel=1e-12)
    dx = layer.backward()
    assert np.all(dx[0, 1] == 0) and np.all(dx[1, 3] == 0)


def test_time_softmax_with_loss_large_scores_are_finite():
    xs = np.array([[[1000.0, 0.0, -1000.0]]], dtype=np.float32)
    layer = TimeSoftmaxWithLoss()
    with np.errstate(over='raise', invalid='raise', divide='raise'):
        loss = layer.forward(xs, np.array([[2]]))
        dx = layer.backward()
    assert np.isfinite(loss) and float(loss) == pytest.approx(2000, rel=1e-6)
    assert np.all(np.isfinite(dx))


@pytest.mark.parametrize('Layer,gates', RECURRENT)
def test_float32_in_float32_out(rng, Layer, gates):
    f = np.float32
    layer = Layer(randn(rng, 3, gates * 4).astype(f), randn(rng, 4, gates * 4).astype(f),
                  np.zeros(gates * 4, f))
    hs = layer.forward(randn(rng, 2, 5, 3).astype(f))
    dxs = layer.backward(np.ones_like(hs))
    assert hs.dtype == f and dxs.dtype == f
    assert all(g.dtype == f for g in layer.grads)


def test_scatter_add_matches_add_at(rng):
    a = rng.standard_normal((9, 4))
    expected = a.copy()
    idx = rng.integers(0, 9, (5, 7))
    vals = rng.standard_normal((5, 7, 4))
    np.add.at(expected, idx.ravel(), vals.reshape(-1, 4))
    backend.scatter_add(a, idx, vals)
    np.testing.assert_allclose(a, expected, rtol=1e-12)


def test_softmax_loss_blocks_cover_every_row():
    """More rows than fit in one cache block: every row is normalised."""
    N, T, V = 3, 50, 1000                 # 150 rows of 4 kB; a block is 128 rows
    xs = np.random.default_rng(0).standard_normal((N, T, V)).astype(np.float32)
    ts = np.zeros((N, T), dtype=int)
    layer = TimeSoftmaxWithLoss()
    layer.forward(xs, ts)
    dx = layer.backward()
    np.testing.assert_allclose(dx.sum(axis=-1), 0, atol=1e-6)     # Σ (p - onehot) = 0 in every row
    assert len(backend.row_blocks(N * T, V * 4)) == 2

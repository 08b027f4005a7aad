"""The AWD-LSTM regularisers (common.regularisation: locked and embedding dropout, weight drop,
AR/TAR) against finite differences in float64, and in a model. NT-ASGD: test_optimizer.py; variable
BPTT: test_variable_bptt.py; both in a run: test_loop.py."""
import numpy as np
import pytest

from ch_gru.rnnlm import Rnnlm
from common import backend
from common.regularisation import ActivationRegularisation, EmbeddingDropout, LockedDropout, WeightDrop
from common.time_layers import TimeEmbedding, TimeGRU, TimeLSTM, TimeRNN
from common.gradcheck import assert_close, check_layer, check_model, numerical_gradient

CELLS = [(TimeGRU, 3), (TimeLSTM, 4), (TimeRNN, 1)]


def recurrent(rng, Layer, gates, D=3, H=4):
    return Layer(rng.standard_normal((D, gates * H)) * .5, rng.standard_normal((H, gates * H)) * .5,
                 rng.standard_normal(gates * H) * .1)


def test_locked_dropout_one_mask_per_sequence_and_its_gradient(rng):
    backend.seed(0)
    layer = LockedDropout(0.5)
    xs = rng.standard_normal((3, 6, 8)) + 3.0          # no zeros of its own
    out = layer.forward(xs)
    kept = out != 0
    assert (kept == kept[:, :1]).all()                  # the same units dropped at every step
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(out[kept], 2 * xs[kept])  # kept units scaled by 1 / (1 - p)
    layer.keep_mask = True
    check_layer(layer, [xs], rng)
    layer.train_flg = False
    assert layer.forward(xs) is xs and layer.backward(xs) is xs


def test_locked_dropout_draws_a_new_mask_per_batch():
    backend.seed(0)
    layer = LockedDropout(0.5)
    xs = np.ones((4, 3, 16))
    assert not np.array_equal(layer.forward(xs), layer.forward(xs))


def test_embedding_dropout_drops_whole_words_and_its_gradient(rng):
    backend.seed(1)
    W = rng.standard_normal((10, 4))
    layer = EmbeddingDropout(W, 0.5)
    ids = np.array([[1, 2, 1, 3], [3, 1, 5, 2]])
    out = layer.forward(ids)
    zero = (out == 0).all(axis=2)
    for v in (1, 2, 3):                                  # a word is dropped everywhere or nowhere
        assert len(set(zero[ids == v])) == 1
    assert zero.any() and not zero.all()
    np.testing.assert_allclose(out[~zero], 2 * W[ids][~zero])
    layer.masked.keep_mask = True
    check_layer(layer, [ids], rng, input_grad=False)
    layer.train_flg = False
    np.testing.assert_array_equal(layer.forward(ids), TimeEmbedding(W).forward(ids))


@pytest.mark.parametrize('Layer,gates', CELLS)
def test_weight_drop_gradient_reaches_only_kept_weights(rng, Layer, gates):
    backend.seed(2)
    layer = recurrent(rng, Layer, gates)
    raw_Wh = layer.params[1]
    wd = WeightDrop(layer, 0.5)
    wd.masked.keep_mask = True
    xs = rng.standard_normal((2, 5, 3))
    check_layer(wd, [xs], rng)                           # d/d(raw Wh), with one mask
    mask = wd.masked.mask
    assert wd.params[1] is raw_Wh and (mask == 0).any()
    assert (wd.grads[1][mask == 0] == 0).all() and (wd.grads[1][mask != 0] != 0).all()
    # the same as the plain layer with Wh ⊙ M
    plain = Layer(layer.params[0], raw_Wh * mask, layer.params[2])
    np.testing.assert_allclose(wd.forward(xs), plain.forward(xs), rtol=1e-12)
    wd.train_flg = False                                 # evaluation: Wh itself
    np.testing.assert_array_equal(wd.forward(xs), Layer(layer.params[0], raw_Wh, layer.params[2]).forward(xs))


@pytest.mark.parametrize('shape', [(2, 5, 3), (3, 1, 4)])
def test_ar_tar_gradient(rng, shape):
    reg = ActivationRegularisation(alpha=2.0, beta=1.5)
    h, hd = rng.standard_normal(shape), rng.standard_normal(shape)
    loss = float(reg.forward(h, hd))
    N, T, H = shape
    expected = 2.0 * (hd ** 2).mean() + (1.5 * ((h[:, 1:] - h[:, :-1]) ** 2).mean() if T > 1 else 0)
    assert loss == pytest.approx(expected)
    dh, dhd = reg.backward()
    assert_close(dh, numerical_gradient(lambda: reg.forward(h, hd), h), 'dh')
    assert_close(dhd, numerical_gradient(lambda: reg.forward(h, hd), hd), 'dh_dropped')
    reg.train_flg = False
    assert reg.forward(h, hd) == 0.0 and reg.backward() == (None, None)


AWD = dict(locked_dropout=True, dropout_input=0.3, dropout_hidden=0.2, dropout_output=0.4, embed_dropout=0.2,
           weight_drop=0.5, ar_alpha=2.0, tar_beta=1.0)


@pytest.mark.parametrize('cell', ['gru', 'lstm', 'rnn'])
@pytest.mark.parametrize('tie', [True, False])
def test_regularised_model_gradient_against_finite_differences(cell, tie):
    """Every piece at once, each cell: the model's gradient of cross-entropy + AR + TAR."""
    np.random.seed(3)
    backend.seed(3)
    model = Rnnlm(7, 4, 4, num_layers=2, cell=cell, tie_weights=tie, dtype='float64', **AWD)
    xs = np.random.randint(0, 7, (2, 4))
    ts = np.random.randint(0, 7, (2, 4))
    model.forward(xs, ts)                                # draw the masks, then keep them
    for layer in [*model.dropouts, model.embed.masked, *(w.masked for w in model.recurrent)]:
        layer.keep_mask = True

    def loss():
        model.reset_state()
        return model.forward(xs, ts)

    check_model(model, loss, cell)
    assert model.config['weight_drop'] == 0.5 and 'ar_alpha' in model.config
    model.reset_state()
    clean = float(model.forward(xs, ts, train_flg=False))   # evaluation: no masks, no penalty
    plain = Rnnlm(7, 4, 4, num_layers=2, cell=cell, tie_weights=tie, dtype='float64', dropout_ratio=0.0)
    for p, q in zip(plain.params, model.params):
        p[...] = q
    assert clean == pytest.approx(float(plain.forward(xs, ts, train_flg=False)), rel=1e-12)


def test_book_model_is_unchanged_by_the_options():
    np.random.seed(0)
    book = Rnnlm(9, 4, 4)
    assert set(book.config) == {'vocab_size', 'wordvec_size', 'hidden_size', 'num_layers', 'dropout_ratio', 'cell',
                                'tie_weights', 'dtype'}
    assert type(book.embed) is TimeEmbedding and book.recurrent is book.rnn_layers and book.activation_reg is None


def test_bad_regularisation_option_is_a_config_error():
    from common.errors import ConfigError
    with pytest.raises(ConfigError, match='weight_drop must be in'):
        Rnnlm(9, 4, 4, weight_drop=1.0)
    with pytest.raises(ConfigError, match='unknown model option'):
        Rnnlm(9, 4, 4, wdrop=0.5)


# -- NT-ASGD ---------------------------------------------------------------------


# -- variable BPTT ---------------------------------------------------------------


# -- in a run: NT-ASGD's average is validated, saved, checkpointed and resumed ---

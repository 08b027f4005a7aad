"""Whole-model checks: BetterRnnlm's loss gradient, weight tying, equations."""
import numpy as np
import pytest

from common import backend
from common.errors import CheckpointError, ConfigError
from common.time_layers import TimeGRU, TimeLSTM
from ch_gru.better_rnnlm import BetterRnnlm
from ch_gru.rnnlm import Rnnlm, load_model
from common.gradcheck import check_model, gru_reference, lstm_reference
from common.run.fileio import load_npz


def small_model(cell='gru', dropout=0.5, **kw):
    np.random.seed(3)
    return BetterRnnlm(vocab_size=11, wordvec_size=5, hidden_size=5, dropout_ratio=dropout, cell=cell,
                       dtype='float64', **kw)


@pytest.mark.parametrize('cell,options', [('gru', {}), ('lstm', {}), ('gru', dict(reset_after=True))])
def test_better_rnnlm_loss_gradient(rng, cell, options):
    model = small_model(cell, **options)
    xs = rng.integers(0, 11, (3, 4))
    ts = rng.integers(0, 11, (3, 4))

    def loss():
        model.reset_state()
        backend.seed(42)        # the same dropout masks at every evaluation
        return model.forward(xs, ts)

    check_model(model, loss, cell)


def test_tied_weight_is_one_parameter_with_one_summed_gradient(rng):
    model = small_model(dropout=0.0)
    E = model.embed.params[0]
    assert model.affine.params[0].base is E or np.shares_memory(model.affine.params[0], E)
    assert sum(p is E for p in model.params) == 1
    assert len(model.params) == len(model.grads) == 1 + 3 * 2 + 1
    xs = rng.integers(0, 11, (2, 3))
    ts = rng.integers(0, 11, (2, 3))
    model.forward(xs, ts)
    model.backward()
    gE = model.grads[0].copy()
    # The same model untied, with the output weight equal to E.T: the tied
    # gradient is the sum of the two untied ones.
    np.random.seed(3)
    untied = Rnnlm(11, 5, 5, num_layers=2, dropout_ratio=0.0, tie_weights=False, dtype='float64')
    for p, q in zip(untied.params, [E] + model.params[1:-1] + [E.T.copy(), model.params[-1]]):
        p[...] = q
    untied.forward(xs, ts)
    untied.backward()
    np.testing.assert_allclose(gE, untied.grads[0] + untied.grads[-2].T, rtol=1e-12, atol=1e-15)


def test_optimizer_update_keeps_weights_tied(rng):
    from common.optimizer import SGD
    model = small_model()
    xs = rng.integers(0, 11, (2, 3))
    model.forward(xs, xs)
    model.backward()
    SGD(1.0).update(model.params, model.grads)
    assert np.shares_memory(model.affine.params[0], model.embed.params[0])


@pytest.mark.parametrize('Layer,reference,gates', [(TimeGRU, gru_reference, 3), (TimeLSTM, lstm_reference, 4)])
def test_recurrent_layer_matches_its_equations(rng, Layer, reference, gates):
    D, H = 4, 6
    Wx, Wh, b = rng.standard_normal((D, gates * H)), rng.standard_normal((H, gates * H)), rng.standard_normal(gates * H)
    xs = rng.standard_normal((3, 7, D))
    np.testing.assert_allclose(Layer(Wx, Wh, b).forward(xs), reference(xs, Wx, Wh, b), rtol=1e-12, atol=1e-14)


def test_gru_stateful_windows_match_equations(rng):
    D, H = 3, 4
    Wx, Wh, b = rng.standard_normal((D, 3 * H)), rng.standard_normal((H, 3 * H)), rng.standard_normal(3 * H)
    xs = rng.standard_normal((2, 10, D))
    layer = TimeGRU(Wx, Wh, b, stateful=True)
    out = np.concatenate([layer.forward(xs[:, :5]).copy(), layer.forward(xs[:, 5:])], axis=1)
    np.testing.assert_allclose(out, gru_reference(xs, Wx, Wh, b), rtol=1e-12, atol=1e-14)


def test_predict_is_deterministic_without_dropout(rng):
    model = small_model()
    xs = rng.integers(0, 11, (2, 3))
    a = model.predict(xs)
    model.reset_state()
    np.testing.assert_array_equal(model.predict(xs), a)


def test_save_and_load_params_round_trip(tmp_path, rng):
    model = small_model()
    path = model.save_params(str(tmp_path / 'm.npz'))
    other = small_model()
    for p in other.params:
        p[...] = 0
    other.load_params(path)
    for p, q in zip(model.params, other.params):
        np.testing.assert_array_equal(p, q)
    assert np.shares_memory(other.affine.params[0], other.embed.params[0])


def test_load_params_shape_mismatch_is_a_clear_error(tmp_path):
    path = small_model().save_params(str(tmp_path / 'm.npz'))
    np.random.seed(0)
    other = BetterRnnlm(vocab_size=12, wordvec_size=5, hidden_size=5, dtype='float64')
    with pytest.raises(CheckpointError, match='vocab_size=11.*vocab_size=12'):
        other.load_params(path)
    with pytest.raises(CheckpointError, match="cell='gru'.*cell='lstm'"):
        small_model('lstm').load_params(path)


def test_load_params_refuses_pickles_and_garbage(tmp_path):
    import pickle
    bad = tmp_path / 'evil.npz'
    bad.write_bytes(pickle.dumps({'a': 1}))
    with pytest.raises(CheckpointError):
        small_model().load_params(str(bad))
    with pytest.raises(CheckpointError, match='no such'):
        small_model().load_params(str(tmp_path / 'missing.npz'))


@pytest.mark.parametrize('kwargs,match', [
    (dict(vocab_size=0), 'vocab_size must be a positive integer'),
    (dict(hidden_size=-3), 'hidden_size'),
    (dict(dropout_ratio=1.0), r'dropout_ratio must be in \[0, 1\)'),
    (dict(cell='tcn'), 'unknown cell'),
    (dict(wordvec_size=4, hidden_size=5), 'weight tying needs'),
    (dict(cell='lstm', reset_after=True), 'reset_after is an option of the GRU'),
])
def test_bad_model_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BetterRnnlm(**{**dict(vocab_size=10, wordvec_size=5, hidden_size=5), **kwargs})


def test_load_model_rebuilds_from_the_file(tmp_path, rng):
    from ch_gru.rnnlm import load_model
    model = small_model('lstm')
    vocab = [f'w{i}' for i in range(11)]
    path = model.save_params(str(tmp_path / 'm.npz'), vocab=vocab)
    other, meta = load_model(path)
    assert meta['vocab'] == vocab and other.config == model.config
    xs = rng.integers(0, 11, (2, 3))
    np.testing.assert_array_equal(other.predict(xs), model.predict(xs))


def test_reset_after_model_is_saved_and_loaded_back_in_its_form(tmp_path, rng):
    """reset_after=True: each GRU layer has the recurrent bias as a fourth
    parameter; the option goes into the file and load_model builds that form."""
    model = small_model(reset_after=True, dropout=0.0)
    book = small_model(dropout=0.0)
    assert model.config['reset_after'] is True and 'reset_after' not in book.config
    assert len(model.params) == len(book.params) + 2
    assert all(layer.reset_after and len(layer.params) == 4 for layer in model.rnn_layers)
    for layer in model.rnn_layers:
        layer.params[3][...] = rng.standard_normal(layer.params[3].shape)   # bh not zero: it must be saved
    path = model.save_params(str(tmp_path / 'm.npz'))
    other, _ = load_model(path)
    assert other.config == model.config and all(layer.reset_after for layer in other.rnn_layers)
    xs = rng.integers(0, 11, (2, 3))
    np.testing.assert_array_equal(other.predict(xs), model.predict(xs))
    with pytest.raises(CheckpointError, match='build the model with the options it was saved with'):
        book.load_params(path)


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

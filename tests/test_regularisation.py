"""The AWD-LSTM pieces (common/regularisation.py, NT-ASGD, variable BPTT)
against finite differences in float64, and what each one promises."""
import math

import numpy as np
import pytest

from ch_gru.rnnlm import Rnnlm
from common import backend
from common.optimizer import ASGD, SGD
from common.regularisation import ActivationRegularisation, EmbeddingDropout, LockedDropout, WeightDrop
from common.time_layers import TimeEmbedding, TimeGRU, TimeLSTM, TimeRNN
from common.batching.variable_bptt import VariableBpttTrainer, window_lengths
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

def test_asgd_trigger_is_awd_lstms_non_monotone_rule():
    opt = ASGD(1.0, nonmono=2)
    # L_k > min(L_1 .. L_{k-3}) starts averaging, from k = 4 on
    assert [opt.observe(v) for v in (5.0, 4.0, 4.5, 4.2)] == [None] * 4     # 4.5: too early; 4.2 < 5
    assert not opt.averaging
    assert opt.observe(4.1) == 'start'                   # 4.1 > min(5.0, 4.0)
    assert opt.averaging and opt.observe(9.0) is None    # it starts once (and restarts=0: never again)


def test_asgd_restart_is_awd_lstms_fine_tuning(rng):
    """With restarts=1 the rule is applied again to the checks of the average alone; when it fires the
    weights become the average and a new average starts from them; a second stall does nothing."""
    p = [rng.standard_normal(3), rng.standard_normal((2, 2))]
    opt = ASGD(0.1, nonmono=1, restarts=1)
    assert [opt.observe(v) for v in (2.0, 3.0, 2.5)] == [None, None, 'start']
    for _ in range(3):
        opt.update(p, [rng.standard_normal(a.shape) for a in p])
    # the average's own checks: 2.45 > min(2.4) fires; the raw checks before (2.0) do not count
    assert [opt.observe(v) for v in (2.4, 2.3, 2.45)] == [None, None, 'restart']
    avg = [a.copy() for a in opt.avg]
    opt.restart(p)
    for a, b in zip(p, avg):
        np.testing.assert_array_equal(a, b)
    assert (opt.avg_count, opt.restarted, opt.phase_start) == (0, 1, 6)
    g = [rng.standard_normal(a.shape) for a in p]
    opt.update(p, g)
    for a, b, gi in zip(opt.avg, avg, g):                 # m = 1: the new average is the first new point
        np.testing.assert_allclose(a, b - 0.1 * gi, rtol=1e-15)
    assert [opt.observe(v) for v in (2.2, 2.1, 2.3)] == [None, None, None]     # restarts spent


def test_sgd_weight_decay_is_l2_in_the_update(rng):
    p = rng.standard_normal((4, 3))
    g = rng.standard_normal((4, 3))
    view = p.T                                            # a non-contiguous view takes the other path
    expected = p - 0.5 * (g + 0.01 * p)
    SGD(0.5, weight_decay=0.01).update([p], [g])
    np.testing.assert_allclose(p, expected, rtol=1e-15)
    q, h = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    expected = q.T - 0.5 * (h.T + 0.01 * q.T)
    SGD(0.5, weight_decay=0.01).update([q.T], [h.T])
    np.testing.assert_allclose(q.T, expected, rtol=1e-15)
    assert view.base is p


def test_asgd_averages_after_the_trigger_and_swaps_back_exactly(rng):
    p = [rng.standard_normal(3), rng.standard_normal((2, 2))]
    opt = ASGD(0.1, nonmono=1)
    seen = []
    for k in range(6):
        if k == 2:
            opt.observe(1.0)
            opt.observe(2.0)
            opt.observe(3.0)                             # worse than 1.0, two checks back: start
            assert opt.averaging
        g = [rng.standard_normal(a.shape) for a in p]
        opt.update(p, g)
        if opt.averaging:
            seen.append([a.copy() for a in p])
    mine = [a.copy() for a in p]
    with opt.averaged(p):
        for a, s in zip(p, zip(*seen)):
            np.testing.assert_allclose(a, np.mean(s, axis=0), rtol=1e-12)
    for a, m in zip(p, mine):
        np.testing.assert_array_equal(a, m)


def test_plain_sgd_never_averages(rng):
    opt = ASGD(0.1, nonmono=0)
    for v in (1.0, 2.0, 3.0, 4.0):
        assert not opt.observe(v)
    p = [rng.standard_normal(3)]
    opt.update(p, [np.ones(3)])
    with opt.averaged(p):
        assert opt.avg is None


# -- variable BPTT ---------------------------------------------------------------

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


# -- in a run: NT-ASGD's average is validated, saved, checkpointed and resumed ---

def asgd_run(tmp_path, max_epoch, resume=None, lr=3.0, data=None, **options):
    from common.run.settings import TrainSettings
    from common.run.loop import make_sgd, train_with_validation
    rng = np.random.default_rng(7)
    train, valid = data or (rng.integers(0, 12, 1201).astype(np.int32), rng.integers(0, 12, 301).astype(np.int32))
    np.random.seed(1)
    model = Rnnlm(12, 8, 8, num_layers=1, cell='lstm', locked_dropout=True, dropout_ratio=0.1, weight_drop=0.3,
                  embed_dropout=0.1, ar_alpha=1.0, tar_beta=1.0)
    s = TrainSettings(**{**dict(batch_size=4, time_size=10, eval_interval=0, eval_batch_size=3, max_grad=1.0,
                                lr_decay=1.0, max_epoch=max_epoch, asgd_nonmono=1, variable_bptt=True, seed=4,
                                out_dir=str(tmp_path), checkpoint_path=str(tmp_path / 'c.npz'),
                                save_path=str(tmp_path / 'm.npz')), **options})
    opt = make_sgd(lr, s)
    result = train_with_validation(model, opt, (train, valid, valid), s, resume=resume)
    return model, opt, result


def test_asgd_average_is_what_a_run_validates_saves_and_resumes_bit_identical(tmp_path):
    """Random ids: nothing to learn, so valid gets worse and averaging starts; a run stopped after two
    epochs and resumed ends exactly where the uninterrupted one does, average included."""
    from common.run.checkpoint import load_checkpoint
    from common.run.fileio import load_npz
    model, opt, result = asgd_run(tmp_path / 'a', 6)
    log = [__import__('json').loads(line) for line in open(tmp_path / 'a' / 'log.jsonl')]
    assert opt.averaging and opt.avg_count > 0 and any(r['event'] == 'asgd_start' for r in log)
    saved, _ = load_npz(str(tmp_path / 'a' / 'm.npz'))
    best_epoch = int(np.argmin(result['history']['valid']))
    start = next(r['epoch'] for r in log if r['event'] == 'asgd_start')
    assert best_epoch + 1 > start       # the best epoch came after the trigger: the file holds an average
    ck = load_checkpoint(str(tmp_path / 'a' / 'c.npz'))
    assert not np.array_equal(saved['param_001'], ck.arrays['param_001'])
    # the model ends with the best (averaged) weights; test perplexity is theirs
    for p, s in zip(model.params, saved.values()):
        np.testing.assert_array_equal(p, s)

    asgd_run(tmp_path / 'b', 2)
    ck = load_checkpoint(str(tmp_path / 'b' / 'c.npz'))
    resumed, opt2, result2 = asgd_run(tmp_path / 'b', 6, resume=ck)
    for p, q in zip(model.params, resumed.params):
        np.testing.assert_array_equal(p, q)
    for a, b in zip(opt.avg, opt2.avg):
        np.testing.assert_array_equal(a, b)
    assert (opt.checks, opt.avg_count) == (opt2.checks, opt2.avg_count)
    assert result2['test_ppl'] == result['test_ppl']


def test_asgd_restart_and_weight_decay_in_a_run_resume_bit_identical(tmp_path):
    """The fine-tuning restart happens in a run (logged, the weights set to the average) and a run
    stopped after it and resumed ends where the uninterrupted one does; weight decay is in the update.
    Train on x → x+1, validate on x → x+5: the better the model learns, the worse valid gets, so
    averaging starts and the average stalls."""
    import json
    ids = np.arange(1201, dtype=np.int32)
    options = dict(asgd_restarts=2, weight_decay=1e-3, data=(ids % 12, (ids[:301] * 5) % 12))
    model, opt, result = asgd_run(tmp_path / 'a', 9, lr=1.0, **options)
    log = [json.loads(line) for line in open(tmp_path / 'a' / 'log.jsonl')]
    events = [(r['event'], r['epoch']) for r in log if r['event'].startswith('asgd_')]
    assert events[0][0] == 'asgd_start' and 'asgd_restart' in {e for e, _ in events}, events
    assert opt.restarted >= 1 and opt.weight_decay == 1e-3
    restart_epoch = next(e for name, e in events if name == 'asgd_restart')
    asgd_run(tmp_path / 'b', restart_epoch + 1, lr=1.0, **options)
    from common.run.checkpoint import load_checkpoint
    resumed, opt2, result2 = asgd_run(tmp_path / 'b', 9, resume=load_checkpoint(str(tmp_path / 'b' / 'c.npz')),
                                      lr=1.0, **options)
    for p, q in zip(model.params, resumed.params):
        np.testing.assert_array_equal(p, q)
    assert (opt.checks, opt.avg_count, opt.restarted, opt.phase_start) == \
        (opt2.checks, opt2.avg_count, opt2.restarted, opt2.phase_start)
    assert result2['test_ppl'] == result['test_ppl']
    # without weight decay the same run ends elsewhere: the option reaches the optimizer
    plain, _, _ = asgd_run(tmp_path / 'c', 3, lr=1.0, asgd_restarts=2)
    decayed, _, _ = asgd_run(tmp_path / 'd', 3, lr=1.0, **options)
    assert not np.array_equal(plain.params[1], decayed.params[1])


def test_asgd_starts_at_the_latest_when_the_budget_is_half_spent(tmp_path, capsys):
    """A rule that would not fire in time (nonmono 50): with asgd_latest=0.5 of 4 epochs averaging starts
    after epoch 2, and what the run validates from then on is the average."""
    import json
    model, opt, result = asgd_run(tmp_path / 'a', 4, asgd_nonmono=50, asgd_latest=0.5)
    log = [json.loads(line) for line in open(tmp_path / 'a' / 'log.jsonl')]
    assert [(r['event'], r['epoch']) for r in log if r['event'].startswith('asgd')] == [('asgd_start', 2)]
    assert '| epoch 2 | 50% of the training budget spent: averaging the weights' in capsys.readouterr().out
    assert opt.averaging and opt.avg_count == 2 * 30 and opt.phase_start == 2
    _, never, _ = asgd_run(tmp_path / 'b', 4, asgd_nonmono=50)
    assert not never.averaging


def test_asgd_latest_is_a_fraction(tmp_path):
    from common.errors import ConfigError
    with pytest.raises(ConfigError, match=r'asgd_latest must be a fraction in \[0, 1\]'):
        asgd_run(tmp_path, 2, asgd_latest=1.5)


def test_weight_decay_needs_an_optimizer_that_applies_it(tmp_path):
    from common.errors import ConfigError
    from common.optimizer import Adam
    from common.run.settings import TrainSettings
    from common.run.loop import train_with_validation
    corpus = np.arange(500) % 7
    with pytest.raises(ConfigError, match='--weight-decay 0.001 is part of the SGD update, which Adam does not do'):
        train_with_validation(Rnnlm(7, 4, 4), Adam(0.01), (corpus, corpus, None),
                              TrainSettings(weight_decay=1e-3, batch_size=2, time_size=5, out_dir=str(tmp_path)))


def test_asgd_needs_the_asgd_optimizer(tmp_path):
    from common.errors import ConfigError
    from common.run.settings import TrainSettings
    from common.run.loop import train_with_validation
    corpus = np.arange(500) % 7
    with pytest.raises(ConfigError, match='--asgd-nonmono averages SGD, not SGD'):
        train_with_validation(Rnnlm(7, 4, 4), SGD(1.0), (corpus, corpus, None),
                              TrainSettings(asgd_nonmono=3, batch_size=2, time_size=5, out_dir=str(tmp_path)))


def test_variable_bptt_refuses_a_trainer_with_other_batching(tmp_path):
    from common.errors import ConfigError
    from common.batching.sentences import SentenceTrainer
    from common.run.settings import TrainSettings
    from common.run.loop import train_with_validation
    corpus = np.arange(500) % 7
    model = Rnnlm(7, 4, 4)
    with pytest.raises(ConfigError, match='--variable-bptt draws windows of the book'):
        train_with_validation(model, SGD(1.0), (corpus, corpus, None),
                              TrainSettings(variable_bptt=True, batch_size=2, time_size=5, out_dir=str(tmp_path)),
                              trainer=SentenceTrainer(model, SGD(1.0), 0))

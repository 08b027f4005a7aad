"""Code written against the book runs unchanged (the book's public API, README).

The models in tests/helpers/book_clients.py are written the way the book's readers
write theirs: no ``super().__init__()``, params gathered from the layers,
weight tying through ``embed_W.T`` (the tied weight listed twice, with two
gradients). tests/programs/book_script.py is a script in the book's style; it runs
here on NumPy and on the stand-in CuPy."""
import json
import os
import types

from common import config
config.GPU = False                       # the book's switch, before the framework's imports
import numpy  # noqa: E402
import pytest  # noqa: E402

from common.np import *  # noqa: E402,F401,F403
from common import tying  # noqa: E402
from common.errors import CheckpointError  # noqa: E402
from common.optimizer import SGD, AdaGrad, Adam, Momentum  # noqa: E402
from common.trainer import RnnlmTrainer  # noqa: E402
from common.util import clip_grads, eval_perplexity, to_cpu, to_gpu  # noqa: E402
from helpers import program  # noqa: E402
from helpers.book_clients import PlainRnnLm, TiedLstmLm, step_difference, twin_models  # noqa: E402
from helpers.processes import run_python  # noqa: E402

CORPUS = numpy.random.RandomState(1).randint(0, 30, 1200)


def fit(model, optimizer, corpus=CORPUS, max_grad=None, epochs=1):
    trainer = RnnlmTrainer(model, optimizer)
    trainer.fit(to_gpu(corpus[:-1]), to_gpu(corpus[1:]), max_epoch=epochs, batch_size=4, time_size=5,
                max_grad=max_grad, eval_interval=10)
    return trainer


def host_params(model):
    return [to_cpu(p).copy() for p in model.params]


def test_backend_is_numpy_here():
    assert np is numpy


# -- saving and loading ---------------------------------------------------------------

def test_default_file_name_is_the_books_and_holds_no_pickle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    numpy.random.seed(0)
    model = TiedLstmLm(30, 8, 8)
    model.save_params()
    assert sorted(os.listdir(tmp_path)) == ['TiedLstmLm.pkl']
    with numpy.load(tmp_path / 'TiedLstmLm.pkl', allow_pickle=False) as archive:   # an .npz, not a pickle
        stored = sorted(name for name in archive.files if name.startswith('param_'))
        assert len(stored) == 5                          # the tied weight once
        assert archive['param_000'].shape == (30, 8)

    numpy.random.seed(1)
    other = TiedLstmLm(30, 8, 8)
    assert not numpy.array_equal(to_cpu(other.params[0]), to_cpu(model.params[0]))
    other.load_params()
    for mine, theirs in zip(host_params(other), host_params(model)):
        numpy.testing.assert_array_equal(mine, theirs)
    embed, affine = other.layers[0].params[0], other.layers[-1].params[0]
    assert numpy.shares_memory(embed, affine)            # loading kept the tying
    xs = CORPUS[:10].reshape(2, 5)
    numpy.testing.assert_array_equal(to_cpu(other.predict(xs)), to_cpu(model.predict(xs)))


def test_file_saved_before_training_loads_after_and_back(tmp_path, monkeypatch):
    """fit lists the tied weight once; files saved before and after stay interchangeable."""
    monkeypatch.chdir(tmp_path)
    numpy.random.seed(0)
    model = TiedLstmLm(30, 8, 8)
    model.save_params('before.pkl')
    before = host_params(model)
    fit(model, Adam(0.01))
    assert len(model.params) == len(model.grads) == 5
    model.save_params()
    model.load_params('before.pkl')
    for p, q in zip(host_params(model), [before[i] for i in (0, 1, 2, 3, 5)]):
        numpy.testing.assert_array_equal(p, q)

    fresh = TiedLstmLm(30, 8, 8)                        # lists the tied weight twice again
    fresh.load_params()
    assert fresh.param_count() == model.param_count() == 30 * 8 + 8 * 32 + 8 * 32 + 32 + 30


def test_loading_another_models_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    TiedLstmLm(30, 8, 8).save_params()
    with pytest.raises(CheckpointError, match=r'TiedLstmLm\.pkl holds parameters of shapes \[\(30, 8\), .* but '
                                              r'this TiedLstmLm has \[\(40, 8\), '):
        TiedLstmLm(40, 8, 8).load_params()


# -- training, evaluation, plotting -----------------------------------------------------

def test_model_without_base_class_or_train_flg_trains_and_evaluates():
    numpy.random.seed(0)
    model = PlainRnnLm(30, 8, 8)
    listing = list(model.params)
    trainer = fit(model, SGD(0.5), epochs=2)
    assert len(trainer.ppl_list) == 12
    assert [id(p) for p in model.params] == [id(p) for p in listing]      # nothing shared, nothing merged
    assert 'backward' not in vars(model)
    model.reset_state()
    ppl = eval_perplexity(model, CORPUS[:400])
    assert 1.0 < ppl < 40.0                          # near the 30 of a uniform guess on random ids


def test_plot_takes_the_books_ylim(monkeypatch):
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    numpy.random.seed(0)
    trainer = fit(TiedLstmLm(30, 8, 8), SGD(1.0))
    trainer.plot(ylim=(0, 60))
    try:
        assert plt.gca().get_ylim() == (0, 60)
        assert len(plt.gca().lines[0].get_ydata()) == len(trainer.ppl_list) == 6
    finally:
        plt.close('all')


# -- the tied weight listed twice ------------------------------------------------------

OPTIMIZERS = [(SGD, 1.0), (Momentum, 0.5), (AdaGrad, 0.1), (Adam, 0.01)]


@pytest.mark.parametrize('max_grad', [None, 0.05], ids=['no-clip', 'clip'])
@pytest.mark.parametrize('optimizer,lr', OPTIMIZERS, ids=[o.__name__ for o, _ in OPTIMIZERS])
def test_tied_steps_equal_the_framework_declaration(optimizer, lr, max_grad):
    """The same training steps on the book-style model (W and W.T listed,
    two gradients) and on the framework's Rnnlm (W listed once) give the
    same weights: one parameter, one summed gradient, for clipping and for
    every optimizer's state."""
    numpy.random.seed(0)
    diff, moved, still_tied = step_difference(optimizer, lr, max_grad, CORPUS[:200])
    assert moved > 1e-4                              # the steps changed the weights
    assert diff <= 1e-12, f'weights differ by {diff} after steps that moved them by {moved}'
    assert still_tied


def test_clipping_sees_one_summed_gradient():
    numpy.random.seed(0)
    book, framework = twin_models()
    tying.merge_shared_params(book)
    xs, ts = CORPUS[:15].reshape(3, 5), CORPUS[1:16].reshape(3, 5)
    norms = []
    for model in (book, framework):
        model.forward(xs, ts, train_flg=False)
        model.backward()
        norms.append(float(clip_grads(model.grads, 1e9)))
    assert norms[0] == pytest.approx(norms[1], rel=1e-12)


def test_sharing_is_found_once_per_fit(monkeypatch):
    calls = []
    find = tying.find_shared
    monkeypatch.setattr(tying, 'find_shared', lambda params: calls.append(1) or find(params))
    numpy.random.seed(0)
    trainer = fit(TiedLstmLm(30, 8, 8), SGD(1.0))
    assert trainer.total_iters == 59
    assert len(calls) == 1


def test_framework_models_are_left_as_they_are():
    from ch_gru.better_rnnlm import BetterRnnlm
    model = BetterRnnlm(30, 8, 8)
    params, grads = model.params, model.grads
    assert tying.merge_shared_params(model) == 0
    assert model.params is params and model.grads is grads and 'backward' not in vars(model)


def _listing(params, grads, fill):
    """A stand-in model whose backward writes ``fill`` into each gradient."""
    model = types.SimpleNamespace(params=list(params), grads=list(grads))

    def backward():
        for g, value in zip(grads, fill):
            g[...] = value
    model.backward = backward
    return model


def test_same_array_listed_twice_gets_one_summed_gradient():
    W, b = numpy.zeros((2, 3)), numpy.zeros(3)
    gW1, gb, gW2 = numpy.zeros((2, 3)), numpy.zeros(3), numpy.zeros((2, 3))
    model = _listing([W, b, W, W.T], [gW1, gb, gW2, numpy.zeros((3, 2))], [1.0, 2.0, 10.0,
                                                                        numpy.arange(6.0).reshape(3, 2)])
    assert tying.merge_shared_params(model) == 2
    assert [id(p) for p in model.params] == [id(W), id(b)] and model.grads[0] is gW1
    model.backward()
    numpy.testing.assert_array_equal(gW1, 11.0 + numpy.arange(6.0).reshape(3, 2).T)
    numpy.testing.assert_array_equal(gb, 2.0)


def test_a_gradient_already_shared_is_not_added_twice():
    W, g = numpy.zeros((2, 3)), numpy.zeros((2, 3))
    model = _listing([W, W.T], [g, g.T], [1.0, 1.0])
    backward = model.backward
    assert tying.merge_shared_params(model) == 1
    assert model.backward is backward
    model.backward()
    numpy.testing.assert_array_equal(g, 1.0)


# -- the script, on NumPy and on the stand-in CuPy ----------------------------------------

def run_script(tmp_path, gpu):
    work = tmp_path / ('gpu' if gpu else 'cpu')
    work.mkdir()
    r = run_python(program('book_script.py'), {}, str(work), *(['--gpu'] if gpu else []), fake_cupy=gpu)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_book_script_on_numpy_and_on_the_gpu_path(tmp_path):
    cpu, gpu = run_script(tmp_path, False), run_script(tmp_path, True)
    assert (cpu.pop('backend'), gpu.pop('backend')) == ('numpy', 'cupy')
    for out in (cpu, gpu):
        assert out['files'] == ['TiedLstmLm.pkl'] and out['magic'] == 'PK'
        assert out['listed'] == 6
        assert out['loaded_predicts_same'] and out['loaded_still_tied']
        assert out['ylim'] == [0, 60]
        for opt, _ in OPTIMIZERS:
            for max_grad in (None, 0.05):
                diff, moved, still_tied = out[f'{opt.__name__}_{max_grad}']
                assert moved > 1e-4 and diff <= 1e-12 and still_tied, (opt.__name__, max_grad)
    assert cpu.keys() == gpu.keys()
    for key in ('plain_ppl', 'plain_train', 'tied_ppl', 'tied_train'):
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-4), key


def test_a_pickle_written_by_the_books_code_loads(tmp_path, monkeypatch):
    """Read without running code (common/run/book_pickle.py; tests/test_base_model.py has the rest)."""
    import pickle
    monkeypatch.chdir(tmp_path)
    model = TiedLstmLm(30, 8, 8)
    with open('TiedLstmLm.pkl', 'wb') as f:          # what the book's save_params writes
        pickle.dump([to_cpu(p).astype(numpy.float16) for p in model.params], f)
    other = TiedLstmLm(30, 8, 8)
    other.load_params()
    for mine, theirs in zip(host_params(other), host_params(model)):
        numpy.testing.assert_array_equal(mine, theirs.astype(numpy.float16))

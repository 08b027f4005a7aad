"""common/base_model.py's load_params on the book's own parameter files: the float16
pickles the book's save_params writes, tied weights listed twice or once, shapes
checked, nothing in a foreign pickle run, the GPU path."""
import json
import pickle

import numpy as np
import pytest

from ch_gru.better_rnnlm import BetterRnnlm
from common.errors import CheckpointError
from helpers.book_clients import TiedLstmLm
from helpers.book_pickles import RunsCommand, book_listing, books_save
from helpers.processes import run_python

XS = np.random.RandomState(5).randint(0, 30, (2, 6))


def rounded(model):
    """The same model with its weights rounded to float16, as the book's file holds them."""
    twin = BetterRnnlm(30, 8, 8, cell='lstm')
    for p, q in zip(twin.params, model.params):
        p[...] = q.astype(np.float16)
    return twin


def test_the_books_file_of_a_better_rnnlm_loads_by_the_default_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.random.seed(0)
    book = BetterRnnlm(30, 8, 8, cell='lstm')
    books_save('BetterRnnlm.pkl', book_listing(book))           # 9 entries, the tied weight twice
    np.random.seed(1)
    model = BetterRnnlm(30, 8, 8, cell='lstm')                   # lists it once: 8 entries
    model.load_params()
    for p, q in zip(model.params, book.params):
        assert p.dtype == np.float32
        np.testing.assert_array_equal(p, q.astype(np.float16).astype(np.float32))
    assert np.shares_memory(model.affine.params[0], model.embed.params[0])
    np.testing.assert_array_equal(model.predict(XS), rounded(book).predict(XS))
    np.testing.assert_allclose(model.predict(XS), book.predict(XS), atol=2e-3)   # float16's rounding


def test_a_book_style_model_loads_its_own_listing_and_the_framework_listing(tmp_path):
    np.random.seed(0)
    source = TiedLstmLm(30, 8, 8)
    for listing, name in ((source.params, 'six.pkl'), ([source.params[i] for i in (0, 1, 2, 3, 5)], 'five.pkl')):
        books_save(tmp_path / name, listing)
        np.random.seed(1)
        model = TiedLstmLm(30, 8, 8)
        model.load_params(str(tmp_path / name))
        embed, affine = model.layers[0].params[0], model.layers[-1].params[0]
        assert np.shares_memory(embed, affine)                     # both listed entries assigned, still tied
        for p, q in zip(model.params, source.params):
            np.testing.assert_array_equal(p, q.astype(np.float16))


def test_after_fit_merged_the_tied_weight_the_books_file_still_loads(tmp_path):
    from common import tying
    np.random.seed(0)
    source = TiedLstmLm(30, 8, 8)
    books_save(tmp_path / 'p.pkl', source.params)
    model = TiedLstmLm(30, 8, 8)
    assert tying.merge_shared_params(model) == 1 and len(model.params) == 5
    model.load_params(str(tmp_path / 'p.pkl'))
    np.testing.assert_array_equal(model.layers[-1].params[0], source.params[0].T.astype(np.float16))


def test_float64_models_get_float64_and_saving_stays_npz(tmp_path):
    np.random.seed(0)
    book = BetterRnnlm(30, 8, 8, cell='lstm')
    books_save(tmp_path / 'b.pkl', book_listing(book))
    model = BetterRnnlm(30, 8, 8, cell='lstm', dtype='float64')
    model.load_params(str(tmp_path / 'b.pkl'))
    assert {p.dtype for p in model.params} == {np.dtype('float64')}
    path = model.save_params(str(tmp_path / 'again.pkl'))          # a .pkl name, the framework's archive
    assert open(path, 'rb').read(2) == b'PK'
    other = BetterRnnlm(30, 8, 8, cell='lstm', dtype='float64')
    other.load_params(path)
    for p, q in zip(other.params, model.params):
        np.testing.assert_array_equal(p, q)


def test_wrong_shapes_are_the_usual_one_line_error(tmp_path):
    np.random.seed(0)
    books_save(tmp_path / 'TiedLstmLm.pkl', TiedLstmLm(30, 8, 8).params)
    with pytest.raises(CheckpointError, match=r'TiedLstmLm\.pkl holds parameters of shapes \[\(30, 8\), .* but '
                                              r'this TiedLstmLm has \[\(40, 8\), .*: build the model with the sizes'):
        TiedLstmLm(40, 8, 8).load_params(str(tmp_path / 'TiedLstmLm.pkl'))
    with pytest.raises(CheckpointError, match=r'holds parameters of shapes .* but this BetterRnnlm has'):
        BetterRnnlm(30, 8, 8).load_params(str(tmp_path / 'TiedLstmLm.pkl'))      # a GRU: 3H, not 4H
    short = TiedLstmLm(30, 8, 8).params[:4]
    books_save(tmp_path / 'short.pkl', short)
    with pytest.raises(CheckpointError, match='holds parameters of shapes'):
        TiedLstmLm(30, 8, 8).load_params(str(tmp_path / 'short.pkl'))


def test_an_untied_file_does_not_load_into_a_tied_model(tmp_path):
    """Same shapes, but the output weight is no transposed embedding: the book
    would silently keep the last one written; here it is an error."""
    np.random.seed(0)
    params = TiedLstmLm(30, 8, 8).params
    untied = params[:4] + [np.random.randn(8, 30).astype('f'), params[5]]
    books_save(tmp_path / 'untied.pkl', untied)
    with pytest.raises(CheckpointError, match=r'entries 0 and 4 should hold one tied weight .* differ'):
        TiedLstmLm(30, 8, 8).load_params(str(tmp_path / 'untied.pkl'))
    from ch_gru.rnnlm import Rnnlm
    listed_once = Rnnlm(30, 8, 8, num_layers=1, cell='lstm', tie_weights=True)     # 5 entries for 6 arrays
    with pytest.raises(CheckpointError, match='holds parameters of shapes .* but this Rnnlm has'):
        listed_once.load_params(str(tmp_path / 'untied.pkl'))


def test_a_pickle_that_would_run_code_is_refused_by_load_params(tmp_path):
    marker = tmp_path / 'ran'
    with open(tmp_path / 'TiedLstmLm.pkl', 'wb') as f:
        pickle.dump([RunsCommand(marker)], f)
    model = TiedLstmLm(30, 8, 8)
    before = [p.copy() for p in model.params]
    with pytest.raises(CheckpointError, match=r'TiedLstmLm\.pkl is a pickle that asks for .*system'):
        model.load_params(str(tmp_path / 'TiedLstmLm.pkl'))
    assert not marker.exists()
    for p, q in zip(model.params, before):
        np.testing.assert_array_equal(p, q)


GPU_CODE = '''
import json, os, sys
from common import config
config.GPU = True
from common.np import *
from helpers.book_clients import TiedLstmLm
os.chdir(sys.argv[1])
model = TiedLstmLm(30, 8, 8)
model.load_params()
print(json.dumps({'module': type(model.params[0]).__module__.split('.')[0],
                  'dtype': str(model.params[0].dtype),
                  'sum': float(model.params[0].get().astype('float64').sum()),
                  'tied': bool((model.layers[-1].params[0].get() == model.params[0].get().T).all())}))
'''


def test_on_the_gpu_the_parameters_are_device_arrays(tmp_path):
    np.random.seed(0)
    source = TiedLstmLm(30, 8, 8)
    books_save(tmp_path / 'TiedLstmLm.pkl', source.params)
    r = run_python(GPU_CODE, {}, str(tmp_path), fake_cupy=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out['module'] == 'cupy' and out['dtype'] == 'float32' and out['tied']
    assert out['sum'] == pytest.approx(float(source.params[0].astype(np.float16).astype('float64').sum()), abs=1e-9)

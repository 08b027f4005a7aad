"""scripts/convert_book_weights.py: the book's pickles of its Rnnlm and BetterRnnlm become
model files of this framework that predict what the book's weights predict; bad input
is one line."""
import os
import pickle
import sys

import numpy as np
import pytest

from ch_gru.better_rnnlm import BetterRnnlm
from ch_gru.rnnlm import Rnnlm, load_model
from common.errors import CheckpointError, ConfigError
from common.run.fileio import load_npz
from helpers import script
from helpers.book_pickles import RunsCommand, book_listing, books_save
from helpers.processes import run_python

SCRIPT = script('convert_book_weights.py')
XS = np.random.RandomState(3).randint(0, 30, (2, 7))


@pytest.fixture(scope='module')
def convert():
    sys.path.insert(0, os.path.dirname(SCRIPT))
    import convert_book_weights
    return convert_book_weights


def rounded_copy(model, **options):
    """``model`` with its weights rounded to float16, as the book's file holds them."""
    twin = type(model)(**options)
    for p, q in zip(twin.params, model.params):
        p[...] = q.astype(np.float16)
    return twin


def test_a_better_rnnlm_end_to_end(tmp_path):
    np.random.seed(0)
    book = BetterRnnlm(30, 8, 8, cell='lstm')
    for p in book.params:
        p += np.random.randn(*p.shape).astype('f') * 0.3           # trained-looking biases too
    pkl = books_save(tmp_path / 'BetterRnnlm.pkl', book_listing(book))
    r = run_python(SCRIPT, None, pkl)
    assert r.returncode == 0, r.stderr
    out = str(tmp_path / 'BetterRnnlm.npz')
    assert r.stdout.startswith(f"{out}: BetterRnnlm(vocab_size=30, wordvec_size=8, hidden_size=8, num_layers=2, "
                               f"dropout_ratio=0.5, cell='lstm', tie_weights=True")

    model, meta = load_model(out)                                   # rebuilt from the file alone
    assert meta['model'] == 'BetterRnnlm' and meta['converted_from'] == 'BetterRnnlm.pkl'
    same = BetterRnnlm(30, 8, 8, cell='lstm')
    same.load_params(out)
    expected = rounded_copy(book, vocab_size=30, wordvec_size=8, hidden_size=8, cell='lstm').predict(XS)
    for m in (model, same):
        np.testing.assert_array_equal(m.predict(XS), expected)
        m.reset_state()
        np.testing.assert_allclose(m.predict(XS), book.predict(XS), atol=5e-3, rtol=0)   # float16's rounding
        book.reset_state()
    model.reset_state()
    assert abs(model.predict(XS) - book.predict(XS)).max() > 0      # the file is float16: not bit-equal


def test_the_books_ch06_rnnlm_untied_one_layer(convert, tmp_path, capsys):
    np.random.seed(1)
    book = Rnnlm(30, 6, 10, num_layers=1, cell='lstm', tie_weights=False, dropout_ratio=0.0)
    pkl = books_save(tmp_path / 'Rnnlm.pkl', book.params)
    assert convert.main([pkl, str(tmp_path / 'r.npz')]) == 0
    assert 'Rnnlm(vocab_size=30, wordvec_size=6, hidden_size=10, num_layers=1, dropout_ratio=0.0' in \
        capsys.readouterr().out
    model, meta = load_model(str(tmp_path / 'r.npz'))
    assert meta['model'] == 'Rnnlm' and not meta['config']['tie_weights']
    np.testing.assert_allclose(model.predict(XS), book.predict(XS), atol=5e-3, rtol=0)
    with pytest.raises(CheckpointError, match=r'holds a 1-layer lstm model without weight tying, not a BetterRnnlm '
                                              r'\(2 layers, tied\): pass --model rnnlm'):
        convert.main([pkl, str(tmp_path / 'b.npz'), '--model', 'better_rnnlm'])


@pytest.mark.parametrize('cell,layers', [('gru', 2), ('rnn', 3), ('gru', 1)])
def test_cells_layers_and_tying_listed_once_are_read_from_the_shapes(convert, tmp_path, cell, layers):
    np.random.seed(2)
    book = Rnnlm(30, 8, 8, num_layers=layers, cell=cell, tie_weights=True)      # tied weight listed once
    pkl = books_save(tmp_path / 'm.pkl', book.params)
    options = convert.infer_options(convert.read_book_file(pkl), pkl)
    assert options == dict(vocab_size=30, wordvec_size=8, hidden_size=8, num_layers=layers, cell=cell,
                           tie_weights=True)
    assert convert.main([pkl, '--model', 'rnnlm', '--dropout-ratio', '0.25']) == 0
    model, meta = load_model(str(tmp_path / 'm.npz'))
    assert meta['model'] == 'Rnnlm' and model.config['dropout_ratio'] == 0.25
    np.testing.assert_allclose(model.predict(XS), book.predict(XS), atol=5e-3, rtol=0)


def test_the_ptb_vocabulary_goes_with_the_model(convert, tmp_path, monkeypatch):
    from dataset import ptb
    words = ' a b c \n b c d e \n'
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'ptb.train.txt').write_text(words)
    monkeypatch.setitem(ptb.MD5, 'ptb.train.txt', None)
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    np.random.seed(0)
    pkl = books_save(tmp_path / 'B.pkl', book_listing(BetterRnnlm(6, 4, 4, cell='lstm')))
    assert convert.main([pkl, '--ptb-vocab', '--data-dir', str(data)]) == 0
    _, meta = load_npz(str(tmp_path / 'B.npz'))
    assert meta['vocab'] == ['a', 'b', 'c', '<eos>', 'd', 'e']
    pkl = books_save(tmp_path / 'C.pkl', book_listing(BetterRnnlm(7, 4, 4, cell='lstm')))
    with pytest.raises(ConfigError, match='the PTB vocabulary has 6 words but the model has 7'):
        convert.main([pkl, '--ptb-vocab', '--data-dir', str(data)])


def test_bad_input_is_one_line_and_nothing_runs(tmp_path):
    marker = tmp_path / 'ran'
    with open(tmp_path / 'evil.pkl', 'wb') as f:
        pickle.dump([np.zeros((3, 2), np.float16), RunsCommand(marker)], f)
    with open(tmp_path / 'dict.pkl', 'wb') as f:
        pickle.dump({'W': np.zeros(3, np.float16)}, f)
    seq2seq = [np.zeros((13, 4)), np.zeros((4, 16)), np.zeros((4, 16)), np.zeros(16), np.zeros((13, 4)),
               np.zeros((4, 16)), np.zeros((4, 16)), np.zeros(16), np.zeros((4, 13)), np.zeros(13)]
    books_save(tmp_path / 'AttentionSeq2seq.pkl', seq2seq)
    mine = Rnnlm(5, 3, 3).save_params(str(tmp_path / 'mine.npz'))
    cases = [((str(tmp_path / 'missing.pkl'),), 'missing.pkl: no such parameter file'),
             ((str(tmp_path / 'evil.pkl'),), f'evil.pkl is a pickle that asks for {os.system.__module__}.system'),
             ((str(tmp_path / 'dict.pkl'),), 'dict.pkl holds a dict, not the list of float arrays'),
             ((str(tmp_path / 'AttentionSeq2seq.pkl'),), "AttentionSeq2seq.pkl holds arrays of shapes [(13, 4), "),
             ((mine, str(tmp_path / 'x.npz')), 'mine.npz is already a file of this framework'),
             ((str(tmp_path / 'evil.pkl'), str(tmp_path / 'evil.pkl')), 'would replace the book'),
             ((str(tmp_path / 'dict.pkl'), '--model', 'lstm'), "argument --model: invalid choice: 'lstm'")]
    for args, message in cases:
        r = run_python(SCRIPT, None, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith('error: ') and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr
    assert not marker.exists()
    assert sorted(os.listdir(tmp_path)) == ['AttentionSeq2seq.pkl', 'dict.pkl', 'evil.pkl', 'mine.npz']

"""The PTB loader: reading, vocabulary, download with checksum, cache, errors."""
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from common.errors import DataError
from dataset import download, ptb

TRAIN = " the cat sat \n the dog sat down \n"
VALID = " the dog \n down cat \n"
TEST = " down the cat \n"


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


@pytest.fixture(autouse=True)
def nothing_beside_the_module(tmp_path, monkeypatch):
    """PTB files a reader put into dataset/ (the book's place) stay out of these tests."""
    empty = tmp_path / 'beside'
    empty.mkdir()
    monkeypatch.setattr(ptb, 'DATASET_DIR', str(empty))
    return empty


@pytest.fixture
def fake_ptb(tmp_path, monkeypatch):
    """A tiny PTB served over HTTP from a local server (the second of two
    mirrors; the first refuses), with the MD5 table pointing at its files."""
    served = tmp_path / 'served'
    served.mkdir()
    files = {'ptb.train.txt': TRAIN, 'ptb.valid.txt': VALID, 'ptb.test.txt': TEST}
    for name, text in files.items():
        (served / name).write_text(text)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.setattr(ptb, 'MIRRORS', ['http://127.0.0.1:1/nothing/', f'http://127.0.0.1:{port}/'])
    monkeypatch.setattr(ptb, 'MD5', {name: md5(text) for name, text in files.items()})
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('DLFS_DATA_DIR', raising=False)
    yield served
    server.shutdown()


def test_load_data_downloads_verifies_and_caches(fake_ptb, tmp_path):
    corpus, word_to_id, id_to_word = ptb.load_data('train')
    assert list(word_to_id) == ['the', 'cat', 'sat', '<eos>', 'dog', 'down']     # first appearance
    np.testing.assert_array_equal(corpus, [0, 1, 2, 3, 0, 4, 2, 5, 3])
    assert corpus.dtype == np.int32
    assert id_to_word[4] == 'dog'
    assert os.path.isfile(tmp_path / 'cache' / 'ptb' / 'ptb.train.txt')
    assert os.path.isfile(tmp_path / 'cache' / 'ptb' / 'ptb.train.npz')
    valid, _, _ = ptb.load_data('val')                     # the book's name for valid
    test, _, _ = ptb.load_data('test')
    assert [id_to_word[i] for i in valid] == ['the', 'dog', '<eos>', 'down', 'cat', '<eos>']
    assert [id_to_word[i] for i in test] == ['down', 'the', 'cat', '<eos>']


def test_unknown_words_become_unk():
    w2i = {'<unk>': 0, 'x': 1}
    np.testing.assert_array_equal(ptb.encode(['x', 'y', 'x'], w2i), [1, 0, 1])
    with pytest.raises(DataError, match=r"1 words outside the training vocabulary \(e.g. y\)"):
        ptb.encode(['x', 'y'], {'x': 0})


def test_second_load_comes_from_the_cache(fake_ptb, monkeypatch):
    ptb.load_data('test')
    monkeypatch.setattr(ptb, 'read_words', lambda path: pytest.fail('text was read again'))
    corpus, _, _ = ptb.load_data('test')
    assert len(corpus) == 4


def test_corrupt_cache_is_rebuilt(fake_ptb, tmp_path):
    ptb.load_data('test')
    (tmp_path / 'cache' / 'ptb' / 'ptb.test.npz').write_bytes(b'garbage')
    corpus, _, _ = ptb.load_data('test')
    assert len(corpus) == 4


def test_path_of_a_split_is_found_or_downloaded_and_checked(fake_ptb, tmp_path, monkeypatch):
    got = ptb.path('val')                                  # downloaded into the cache
    assert got == str(tmp_path / 'cache' / 'ptb' / 'ptb.valid.txt')
    assert open(got).read() == VALID
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'ptb.test.txt').write_text(TEST)
    assert ptb.path('test', str(mine)) == str(mine / 'ptb.test.txt')
    (mine / 'ptb.test.txt').write_text(' tampered \n')
    with pytest.raises(DataError, match=r'ptb\.test\.txt has MD5 .* expected'):
        ptb.path('test', str(mine))
    with pytest.raises(DataError, match="unknown PTB split 'dev'"):
        ptb.path('dev')


def test_explicit_data_dir_wins_and_is_checked(fake_ptb, tmp_path, monkeypatch):
    mine = tmp_path / 'mine' / 'ptb'
    mine.mkdir(parents=True)
    for name in ('ptb.train.txt', 'ptb.valid.txt', 'ptb.test.txt'):
        (mine / name).write_text((fake_ptb / name).read_text())
    monkeypatch.setattr(ptb, 'MIRRORS', [])          # no download allowed
    corpus, _, _ = ptb.load_data('train', data_dir=str(tmp_path / 'mine'))    # found in ptb/ subfolder
    assert len(corpus) == 9
    (mine / 'ptb.test.txt').write_text(' tampered \n')
    with pytest.raises(DataError, match=r'ptb\.test\.txt has MD5 .* expected'):
        ptb.load_data('test', data_dir=str(tmp_path / 'mine'))


def test_offline_error_names_file_dirs_and_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(ptb, 'MIRRORS', ['http://127.0.0.1:1/a/', 'http://127.0.0.1:1/b/'])
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('DLFS_DATA_DIR', raising=False)
    with pytest.raises(DataError) as err:
        ptb.load_data('train', data_dir=str(tmp_path))
    msg = str(err.value)
    assert 'ptb.train.txt not found in' in msg and str(tmp_path) in msg
    assert 'download failed' in msg and '--data-dir' in msg
    assert '\n' not in msg


def test_bad_checksum_download_is_rejected(fake_ptb, monkeypatch, tmp_path):
    monkeypatch.setitem(ptb.MD5, 'ptb.train.txt', '0' * 32)
    with pytest.raises(DataError, match='expected 0000'):
        ptb.load_data('train')
    assert not os.path.exists(tmp_path / 'cache' / 'ptb' / 'ptb.train.txt')


def test_missing_data_dir_and_unknown_split(tmp_path):
    with pytest.raises(DataError, match='does not exist'):
        ptb.load_data('train', data_dir=str(tmp_path / 'nope'))
    with pytest.raises(DataError, match="unknown PTB split 'dev'"):
        ptb.load_data('dev')


def test_real_files_token_counts(shared_data):
    d = os.path.join(shared_data, 'ptb')
    assert download.md5sum(os.path.join(d, 'ptb.valid.txt')) == ptb.MD5['ptb.valid.txt']
    (valid, test), w2i, _ = ptb.load_files(os.path.join(d, 'ptb.valid.txt'), os.path.join(d, 'ptb.test.txt'))
    assert len(valid) == 73760 and len(test) == 82430
    assert valid[-1] == w2i['<eos>']


def test_load_files_errors(tmp_path):
    with pytest.raises(DataError, match='does not exist'):
        ptb.load_files(str(tmp_path / 'missing.txt'))
    empty = tmp_path / 'empty.txt'
    empty.write_text('')
    with pytest.raises(DataError, match='is empty'):
        ptb.load_files(str(empty))
    binary = tmp_path / 'bin.txt'
    binary.write_bytes(b'\xff\xfe\x00abc')
    with pytest.raises(DataError, match='not UTF-8'):
        ptb.load_files(str(binary))


def test_the_books_place_beside_the_module_is_searched(shared_data, tmp_path, monkeypatch, nothing_beside_the_module):
    """The book keeps ptb.*.txt beside dataset/ptb.py: found there after --data-dir and
    $DLFS_DATA_DIR, before the cache. Real valid and test files; the train file is the
    first 400 lines of ptb.valid.txt (ptb.train.txt is not on these machines)."""
    import shutil
    assert ptb.DATASET_DIR == str(nothing_beside_the_module)
    monkeypatch.undo()
    assert ptb.DATASET_DIR == os.path.dirname(os.path.abspath(ptb.__file__))     # dataset/, by default
    beside = tmp_path / 'dataset'
    beside.mkdir()
    monkeypatch.setattr(ptb, 'DATASET_DIR', str(beside))
    monkeypatch.setattr(ptb, 'MIRRORS', [])                                      # no download
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('DLFS_DATA_DIR', raising=False)
    real = os.path.join(shared_data, 'ptb')
    for name in ('ptb.valid.txt', 'ptb.test.txt'):
        shutil.copy(os.path.join(real, name), beside / name)
    with open(os.path.join(real, 'ptb.valid.txt')) as f:
        train = ''.join(f.readlines()[:400])
    (beside / 'ptb.train.txt').write_text(train)
    monkeypatch.setitem(ptb.MD5, 'ptb.train.txt', md5(train))

    corpus, word_to_id, id_to_word = ptb.load_data('train')
    assert len(corpus) == len(train.split()) + 400 and id_to_word[int(corpus[-1])] == '<eos>'
    valid, _, _ = ptb.load_data('val')
    test, _, _ = ptb.load_data('test')
    assert (len(valid), len(test)) == (73760, 82430)
    np.testing.assert_array_equal(valid[:len(corpus)], corpus)                    # the same first lines
    assert ptb.path('test') == str(beside / 'ptb.test.txt')

    mine, env = tmp_path / 'mine', tmp_path / 'env'
    for d in (mine, env):
        d.mkdir()
        shutil.copy(os.path.join(real, 'ptb.test.txt'), d / 'ptb.test.txt')
    monkeypatch.setenv('DLFS_DATA_DIR', str(env))
    assert ptb.path('test', str(mine)) == str(mine / 'ptb.test.txt')             # --data-dir first
    assert ptb.path('test') == str(env / 'ptb.test.txt')                          # then $DLFS_DATA_DIR
    monkeypatch.delenv('DLFS_DATA_DIR')
    (tmp_path / 'cache').mkdir(exist_ok=True)
    shutil.copy(os.path.join(real, 'ptb.test.txt'), tmp_path / 'cache' / 'ptb.test.txt')
    assert ptb.path('test') == str(beside / 'ptb.test.txt')                       # before the cache
    (beside / 'ptb.test.txt').write_text(' tampered \n')
    with pytest.raises(DataError, match=r'dataset/ptb\.test\.txt has MD5 .* expected'):        # and checked
        ptb.path('test')


def test_beside_is_an_option_of_the_shared_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setenv('DLFS_DATA_DIR', str(tmp_path / 'env'))
    assert download.search_dirs('given', beside='here') == ['given', str(tmp_path / 'env'), 'here',
                                                            download.cache_dir()]
    assert download.search_dirs('given') == ['given', str(tmp_path / 'env'), download.cache_dir()]
    (tmp_path / 'env').mkdir()
    here = tmp_path / 'here'
    (here / 'corpus').mkdir(parents=True)
    (here / 'corpus' / 'a.txt').write_text('x\n')
    assert download.fetch('a.txt', 'corpus', [], beside=str(here)) == str(here / 'corpus' / 'a.txt')
    with pytest.raises(DataError, match='a.txt not found in .*/elsewhere, '):
        download.fetch('a.txt', 'corpus', [], beside=str(tmp_path / 'elsewhere'), download=False)

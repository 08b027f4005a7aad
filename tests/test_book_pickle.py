"""common/run/book_pickle.py: the book's parameter pickles load; nothing else does, and
nothing in a refused file runs."""
import builtins
import pickle

import numpy as np
import pytest

from common.errors import CheckpointError
from common.run import book_pickle
from helpers.book_pickles import RunsCommand, books_save


def book_params(rng):
    """A book-style listing: an embedding, an LSTM's three, the tied W.T, a bias."""
    W = rng.standard_normal((7, 4)).astype('f')
    return [W, rng.standard_normal((4, 16)).astype('f'), rng.standard_normal((4, 16)).astype('f'),
            np.zeros(16, 'f'), W.T, rng.standard_normal(7).astype('f')]


@pytest.mark.parametrize('protocol', [2, 3, 4, 5, None])
def test_the_books_files_load_with_every_protocol(tmp_path, rng, protocol):
    params = book_params(rng)
    path = tmp_path / 'BetterRnnlm.pkl'
    books_save(path, params, protocol)
    assert book_pickle.is_pickle(path)
    arrays = book_pickle.load(path)
    assert len(arrays) == len(params)
    for a, p in zip(arrays, params):
        assert type(a) is np.ndarray and a.dtype == np.float16
        np.testing.assert_array_equal(a, p.astype(np.float16))     # W.T too: stored in Fortran order


def test_float32_float64_and_tuples_load_too(tmp_path):
    path = tmp_path / 'p.pkl'
    with open(path, 'wb') as f:
        pickle.dump((np.ones((2, 3), 'f'), np.arange(4.0), np.zeros(0, np.float16)), f)
    arrays = book_pickle.load(path)
    assert [a.dtype for a in arrays] == [np.float32, np.float64, np.float16]
    np.testing.assert_array_equal(arrays[1], [0, 1, 2, 3])


class Evaluates:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w')",)


class NestedReduce:
    """A float array whose rebuilding would first run a command (nested in the arguments)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return np.asarray, (RunsCommand(self.marker),)


@pytest.mark.parametrize('make', [RunsCommand, Evaluates, NestedReduce])
@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_a_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path, make, protocol):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pkl'
    with open(path, 'wb') as f:
        pickle.dump([np.zeros(3, np.float16), make(marker)], f, protocol=protocol)
    with pytest.raises(CheckpointError) as err:
        book_pickle.load(path)
    msg = str(err.value)
    assert msg.startswith(f'{path} is a pickle that asks for ') and 'refused unread' in msg and '\n' not in msg
    assert not marker.exists()


class Reduces:
    """Pickles as ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]          # NumPy's own _reconstruct
FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]                  # and its protocol-5 _frombuffer


@pytest.mark.parametrize('protocol', [2, 4])
@pytest.mark.parametrize('reduced,reason', [
    (Reduces(np.ndarray, (10 ** 8,)), "'_NdarrayMarker' object is not callable"),
    (Reduces(RECONSTRUCT, np.ndarray, (10 ** 8,), b'b'), 'rebuilt with other arguments than NumPy writes'),
    (Reduces(RECONSTRUCT, np.ndarray, (0,), b'O'), 'rebuilt with other arguments than NumPy writes'),
    (Reduces(FROMBUFFER, b'abcd', np.dtype('f2'), (5,), 'C'), 'an array of shape \\(5,\\) has 4 bytes'),
    (Reduces(FROMBUFFER, b'abcd', np.dtype('f2'), (2,), 'X'), 'rebuilt with other arguments'),
    (Reduces(__import__('codecs').encode, 'abc', 'rot13'), 'another encoding than latin1'),
    (Reduces(bytes, 10 ** 8), 'takes 0 positional arguments'),
])
def test_the_names_numpy_writes_used_another_way_are_refused(tmp_path, reduced, reason, protocol):
    """numpy.ndarray is nothing callable here, _reconstruct and _frombuffer take only
    NumPy's own arguments, _codecs.encode only latin1, bytes() no arguments."""
    path = tmp_path / 'odd.pkl'
    with open(path, 'wb') as f:
        pickle.dump([reduced], f, protocol=protocol)
    with pytest.raises(CheckpointError, match=r"is not a readable pickle of the book's parameters \(.*" + reason):
        book_pickle.load(path)


@pytest.mark.parametrize('content,problem', [
    ({'W': np.zeros(3, np.float16)}, 'holds a dict, not the list of float arrays'),
    ([], 'holds an empty list'),
    ([np.zeros(2, 'f'), {'nested': [np.zeros(2, 'f')]}], 'holds a list whose entry 1 is a dict'),
    ([np.zeros(2, 'f'), 3.0], 'entry 1 is a float'),
    ([np.arange(3)], 'entry 0 is an array of int64'),
    ([np.zeros(2, np.complex64)], 'entry 0 is an array of complex64'),
    ([np.array(['a'], dtype=object)], 'entry 0 is an array of object'),
    ('text', 'holds a str'),
])
def test_other_content_is_refused_with_what_it_is(tmp_path, content, problem):
    path = tmp_path / 'x.pkl'
    with open(path, 'wb') as f:
        pickle.dump(content, f)
    with pytest.raises(CheckpointError, match=problem) as err:
        book_pickle.load(path)
    assert str(err.value).startswith(str(path)) and '\n' not in str(err.value)


def test_an_object_is_refused_by_its_class(tmp_path):
    path = tmp_path / 'obj.pkl'
    with open(path, 'wb') as f:
        pickle.dump([np.zeros(2, 'f'), RunsCommand('x')], f, protocol=4)
    with pytest.raises(CheckpointError, match=r'asks for (posix|nt)\.system'):
        book_pickle.load(path)
    with open(path, 'wb') as f:
        pickle.dump(CheckpointError('x'), f, protocol=4)
    with pytest.raises(CheckpointError, match=r'asks for common\.errors\.CheckpointError'):
        book_pickle.load(path)


def test_missing_truncated_and_foreign_files(tmp_path, rng):
    with pytest.raises(CheckpointError, match='no such parameter file'):
        book_pickle.load(tmp_path / 'missing.pkl')
    path = tmp_path / 'p.pkl'
    books_save(path, book_params(rng))
    data = path.read_bytes()
    for cut in (1, 2, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match='truncated, corrupted or of another kind') as err:
            book_pickle.load(path)
        assert '\n' not in str(err.value)
    path.write_text('hello')
    assert not book_pickle.is_pickle(path)
    assert not book_pickle.is_pickle(tmp_path / 'missing.pkl')

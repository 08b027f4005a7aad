"""dataset.sequence, the book's addition and date files: the arrays and vocabulary of its chapter 7,
where the files are looked for, the download with its checksum, errors."""
import hashlib
import os
import shutil

import numpy as np
import pytest

from common.errors import DataError
from dataset import download, sequence

ADDITION_LINES = '16+75  _91  \n52+607 _659 \n75+22  _97  \n'


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch):
    """An empty vocabulary (the module keeps one for all the files it loads), nothing beside the
    module, an empty cache, no DLFS_DATA_DIR."""
    monkeypatch.setattr(sequence, 'char_to_id', {})
    monkeypatch.setattr(sequence, 'id_to_char', {})
    beside = tmp_path / 'beside'
    beside.mkdir()
    monkeypatch.setattr(sequence, 'HERE', str(beside))
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('DLFS_DATA_DIR', raising=False)
    return beside


def book_load(path, seed=1984):
    """The book's algorithm, line by line: questions before the first '_', vocabulary in order of
    first appearance, shuffle, the last tenth for test."""
    char_to_id = {}
    questions, answers = [], []
    for line in open(path, encoding='utf-8'):
        idx = line.find('_')
        questions.append(line[:idx])
        answers.append(line[idx:-1])
    for q, a in zip(questions, answers):
        for c in q + a:
            char_to_id.setdefault(c, len(char_to_id))
    x = np.array([[char_to_id[c] for c in q] for q in questions])
    t = np.array([[char_to_id[c] for c in a] for a in answers])
    indices = np.arange(len(x))
    np.random.seed(seed)
    np.random.shuffle(indices)
    split = len(x) - len(x) // 10
    return (x[indices][:split], t[indices][:split]), (x[indices][split:], t[indices][split:]), char_to_id


def real(shared_data, name):
    path = os.path.join(shared_data, 'sequence', name)
    if not os.path.isfile(path):
        pytest.skip(f'{path} not found')
    return path


def test_addition_is_the_books_show_addition_dataset(shared_data, monkeypatch):
    monkeypatch.setenv('DLFS_DATA_DIR', shared_data)           # found in its sequence/ subfolder
    (x_train, t_train), (x_test, t_test) = sequence.load_data('addition.txt', seed=1984)
    char_to_id, id_to_char = sequence.get_vocab()
    assert (x_train.shape, t_train.shape, x_test.shape, t_test.shape) == ((45000, 7), (45000, 5), (5000, 7), (5000, 5))
    np.testing.assert_array_equal(x_train[0], [3, 0, 2, 0, 0, 11, 5])     # the book's printed rows
    np.testing.assert_array_equal(t_train[0], [6, 0, 11, 7, 5])
    assert ''.join(id_to_char[c] for c in x_train[0]) == '71+118 '
    assert ''.join(id_to_char[c] for c in t_train[0]) == '_189 '
    assert len(char_to_id) == 13 and id_to_char == {i: c for c, i in char_to_id.items()}
    assert np.issubdtype(x_train.dtype, np.integer)


@pytest.mark.parametrize('name', ['addition.txt', 'date.txt'])
def test_arrays_are_the_books_algorithm(shared_data, name):
    (x_train, t_train), (x_test, t_test) = sequence.load_data(name, data_dir=os.path.dirname(real(shared_data, name)))
    (bx, bt), (bx_test, bt_test), vocab = book_load(real(shared_data, name))
    for ours, theirs in ((x_train, bx), (t_train, bt), (x_test, bx_test), (t_test, bt_test)):
        np.testing.assert_array_equal(ours, theirs)
    assert sequence.get_vocab()[0] == vocab and list(sequence.get_vocab()[0]) == list(vocab)
    if name == 'date.txt':
        assert (x_train.shape, t_train.shape) == ((45000, 29), (45000, 11))
        assert ''.join(sequence.id_to_char[c] for c in t_train[0])[0] == '_'


def test_seed_none_keeps_the_global_generator_and_a_second_file_extends_the_vocabulary(tmp_path, monkeypatch):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'tiny.txt').write_text(ADDITION_LINES * 4)
    (data / 'other.txt').write_text('ab_c\n' * 3)
    monkeypatch.setenv('DLFS_DATA_DIR', str(data))
    np.random.seed(5)
    expected = np.random.permutation(12)
    np.random.seed(5)
    (x_train, _), (x_test, _) = sequence.load_data('tiny.txt', seed=None)
    x = np.concatenate([x_train, x_test])
    order = [int(''.join(sequence.id_to_char[c] for c in row).split('+')[0]) for row in x]
    assert order == [[16, 52, 75][i % 3] for i in expected]
    assert len(x_train) == 11 and len(x_test) == 1                     # 12 - 12 // 10
    known = len(sequence.char_to_id)
    sequence.load_data('other.txt')
    assert [sequence.char_to_id[c] for c in 'abc'] == [known, known + 1, known + 2]


def test_a_file_beside_the_module_comes_first(shared_data, fresh, tmp_path, monkeypatch):
    shutil.copy(real(shared_data, 'addition.txt'), fresh / 'addition.txt')
    monkeypatch.setattr(sequence, 'fetch', None)             # never asked
    (x_train, t_train), _ = sequence.load_data()
    np.testing.assert_array_equal(x_train[0], [3, 0, 2, 0, 0, 11, 5])


def test_a_damaged_file_beside_the_module_is_refused(fresh):
    (fresh / 'addition.txt').write_text(ADDITION_LINES)
    with pytest.raises(DataError, match='MD5'):
        sequence.load_data('addition.txt')


def mirror(tmp_path, name, text):
    folder = tmp_path / 'mirror'
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(text)
    return folder.as_uri() + '/'


def test_download_from_a_mirror_into_the_cache_with_its_checksum(shared_data, tmp_path, monkeypatch):
    content = open(real(shared_data, 'date.txt'), 'rb').read()
    monkeypatch.setattr(sequence, 'MIRRORS', ['file:///nonexistent/', mirror(tmp_path, 'date.txt', content)])
    (x_train, _), _ = sequence.load_data('date.txt')
    cached = tmp_path / 'cache' / 'sequence' / 'date.txt'
    assert cached.read_bytes() == content
    assert x_train.shape == (45000, 29)
    monkeypatch.setattr(sequence, 'MIRRORS', [])                      # from the cache now
    assert sequence.path('date.txt') == str(cached)


def test_download_with_a_wrong_checksum_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sequence, 'MIRRORS', [mirror(tmp_path, 'addition.txt', ADDITION_LINES.encode())])
    with pytest.raises(DataError, match=r'MD5 [0-9a-f]{32}, expected 0be232e09ddbc99aa7c7f54b5081dbc0') as err:
        sequence.load_data('addition.txt')
    assert '\n' not in str(err.value)
    assert not (tmp_path / 'cache' / 'sequence' / 'addition.txt').exists()


def test_download_through_the_url_opener(shared_data, monkeypatch):
    """The book's raw dataset folder is the mirror; the opener stands in for the network."""
    content = open(real(shared_data, 'addition.txt'), 'rb').read()
    asked = []

    class Response:
        def __init__(self, url):
            asked.append(url)
            self.data = content

        def read(self, n):
            block, self.data = self.data[:n], self.data[n:]
            return block

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(download.urllib.request, 'urlopen', lambda url, timeout: Response(url))
    (x_train, _), _ = sequence.load_data()
    assert asked == ['https://raw.githubusercontent.com/oreilly-japan/deep-learning-from-scratch-2/master/dataset/'
                     'addition.txt']
    assert hashlib.md5(content).hexdigest() == sequence.MD5['addition.txt']
    np.testing.assert_array_equal(x_train[0], [3, 0, 2, 0, 0, 11, 5])


def test_an_unknown_file_is_one_line_naming_the_choices(tmp_path, monkeypatch):
    monkeypatch.setattr(sequence, 'MIRRORS', ['file:///nonexistent/'])
    with pytest.raises(DataError) as err:
        sequence.load_data('adition.txt')
    message = str(err.value)
    assert "'adition.txt'" in message and 'addition.txt, date.txt' in message and '\n' not in message


def test_lines_of_another_shape_are_one_line(tmp_path, monkeypatch):
    (tmp_path / 'bad.txt').write_text('1+1_2\n10+1_11\n')
    monkeypatch.setenv('DLFS_DATA_DIR', str(tmp_path))
    with pytest.raises(DataError, match='line 2 is not like line 1') as err:
        sequence.load_data('bad.txt')
    assert '\n' not in str(err.value)
    (tmp_path / 'none.txt').write_text('12\n34\n')
    with pytest.raises(DataError, match='line 1'):
        sequence.load_data('none.txt')


def test_a_missing_data_dir_is_named(tmp_path):
    with pytest.raises(DataError, match='does not exist'):
        sequence.load_data('addition.txt', data_dir=str(tmp_path / 'nowhere'))

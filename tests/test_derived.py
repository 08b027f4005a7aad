"""dataset/derived.py: the small corpora derived from the real files."""
import os

import pytest

from common.errors import DataError
from dataset import derived, ptb


def lines(path):
    with open(path, encoding='utf-8') as f:
        return f.readlines()


def test_ptb_mini_is_ptb_test_for_training_and_the_halves_of_ptb_valid(shared_data, tmp_path):
    train, valid, test = derived.corpus_files('ptb-mini', shared_data, str(tmp_path))
    assert train == os.path.join(shared_data, 'ptb', 'ptb.test.txt')
    whole = lines(os.path.join(shared_data, 'ptb', 'ptb.valid.txt'))
    first, second = lines(valid), lines(test)
    assert first + second == whole and len(first) == len(whole) // 2
    assert os.path.dirname(valid) == str(tmp_path) and os.path.basename(test) == 'ptb-mini.test.txt'


def test_wikitext2_trains_on_its_valid_file_and_halves_its_test_file(shared_data, tmp_path):
    train, valid, test = derived.wikitext2_halves(shared_data, str(tmp_path / 'new'))
    assert train == os.path.join(shared_data, 'wikitext-2', 'valid.txt')
    whole = lines(os.path.join(shared_data, 'wikitext-2', 'test.txt'))
    assert lines(valid) + lines(test) == whole and len(lines(valid)) == len(whole) // 2


def test_ptb_lines_are_consecutive_slices_of_ptb_test(shared_data, tmp_path):
    paths = derived.ptb_lines(100, shared_data, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ['train.txt', 'valid.txt', 'test.txt']
    assert [len(lines(p)) for p in paths] == [100, 20, 20]
    source = lines(ptb.path('test', shared_data))
    assert sum((lines(p) for p in paths), []) == source[:140]
    with pytest.raises(DataError, match='fewer than the'):
        derived.ptb_lines(10 ** 6, shared_data, str(tmp_path))


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """An empty data directory, an empty cache and PTB mirrors that refuse."""
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('DLFS_DATA_DIR', raising=False)
    monkeypatch.setattr(ptb, 'MIRRORS', ['http://127.0.0.1:1/'])
    empty = tmp_path / 'empty'
    empty.mkdir()
    return str(empty)


@pytest.mark.parametrize('name,missing', [('wikitext-2', 'wikitext-2/valid.txt'), ('ptb-mini', 'ptb.test.txt')])
def test_a_missing_input_is_a_one_line_data_error(nowhere, tmp_path, name, missing):
    with pytest.raises(DataError) as exc:
        derived.corpus_files(name, nowhere, str(tmp_path / 'out'))
    assert missing in str(exc.value) and '\n' not in str(exc.value)
    assert not (tmp_path / 'out').exists()


def test_an_unknown_corpus_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="unknown derived corpus 'ptb-maxi': choose from ptb-mini, wikitext-2"):
        derived.corpus_files('ptb-maxi', None, str(tmp_path))

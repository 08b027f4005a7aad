"""Character corpora: vocabularies, encode/decode round trips, splits, the real files."""
import os
import shutil

import numpy as np
import pytest

from common.errors import DataError
from dataset import chars
from dataset.chars import BOS, EOS, CharVocab


def test_text_vocab_is_sorted_and_round_trips(tmp_path):
    text = 'Héllo, wörld ✓\nsecond line\twith a tab\n\nlast'
    vocab = CharVocab.build([text])
    assert vocab.tokens == sorted(set(text))
    assert CharVocab.build([text[::-1]]).tokens == vocab.tokens       # order of appearance does not matter
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and len(ids) == len(text)
    assert vocab.decode(ids) == text
    again = CharVocab.from_meta(vocab.tokens, vocab.meta())
    assert again.decode(again.encode(text)) == text


def test_unknown_character_is_a_clear_error():
    vocab = CharVocab.build(['abc'])
    with pytest.raises(DataError, match=r"1 character\(s\) not in the vocabulary \('z'\)"):
        vocab.encode('abz', source='the prime')


def test_sentence_mode_wraps_lines_and_round_trips():
    lines = ['First line', '', 'second', 'x']
    vocab = CharVocab.build(['\n'.join(lines)], sentences=True)
    assert vocab.tokens[:2] == [BOS, EOS] and '\n' not in vocab.tokens
    ids = vocab.encode_lines(lines)
    assert ids[0] == vocab.bos and ids[-1] == vocab.eos
    assert (ids == vocab.bos).sum() == 3 == (ids == vocab.eos).sum()       # the empty line is skipped
    assert vocab.decode(ids) == 'First line\nsecond\nx\n'


def test_file_corpus_split_by_fraction_is_deterministic(tmp_path):
    text = ''.join(chr(97 + i % 26) for i in range(1000)) + '\n'
    path = tmp_path / 'c.txt'
    path.write_text(text, encoding='utf-8')
    a = chars.load_corpus(str(path), (0.8, 0.1, 0.1))
    b = chars.load_corpus(str(path), (0.8, 0.1, 0.1))
    assert [len(a.train), len(a.valid), len(a.test)] == [801, 100, 100]
    for x, y in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)):
        np.testing.assert_array_equal(x, y)
    assert a.vocab.decode(np.concatenate([a.train, a.valid, a.test])) == text
    default = chars.load_corpus(str(path))
    assert [len(default.train), len(default.valid), len(default.test)] == [901, 50, 50]
    no_test = chars.load_corpus(str(path), (0.9, 0.1, 0))
    assert no_test.test is None


def test_sentence_corpus_splits_by_lines(tmp_path):
    lines = [f'line {i}' for i in range(20)]
    path = tmp_path / 's.txt'
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    c = chars.load_corpus(str(path), (0.5, 0.25, 0.25), sentences=True)
    assert c.vocab.decode(c.train) == '\n'.join(lines[:10]) + '\n'
    assert c.vocab.decode(c.valid).splitlines() == lines[10:15]
    assert c.vocab.decode(c.test).splitlines()[-1] == 'line 19'


@pytest.mark.parametrize('fractions,message', [
    ((0.9, 0.2, 0.0), 'summing to 1'),
    ((1.0, 0.0, 0.0), 'must be above 0'),
])
def test_bad_split_fractions(tmp_path, fractions, message):
    path = tmp_path / 'c.txt'
    path.write_text('abc' * 100, encoding='utf-8')
    with pytest.raises(DataError, match=message):
        chars.load_corpus(str(path), fractions)


def test_bad_files_are_one_line_errors(tmp_path):
    (tmp_path / 'bin.txt').write_bytes(b'\xff\xfe\x00abc')
    (tmp_path / 'empty.txt').write_text('  \n')
    with pytest.raises(DataError, match='is not UTF-8 text'):
        chars.load_corpus(str(tmp_path / 'bin.txt'))
    with pytest.raises(DataError, match='is empty'):
        chars.load_corpus(str(tmp_path / 'empty.txt'))
    with pytest.raises(DataError, match='does not exist'):
        chars.load_corpus(str(tmp_path / 'missing.txt'))


def test_tiny_shakespeare_round_trip_and_checksum(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv('DLFS_DATA_DIR', raising=False)
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    c = chars.load_corpus('shakespeare', data_dir=shared_data)
    with open(os.path.join(shared_data, 'shakespeare', 'input.txt'), encoding='utf-8') as f:
        text = f.read()
    assert len(c.vocab) == 65 and len(text) == 1115394
    n = len(text)
    assert len(c.train) == round(0.9 * n) and len(c.valid) == round(0.95 * n) - round(0.9 * n)
    assert c.vocab.decode(np.concatenate([c.train, c.valid, c.test])) == text
    # a damaged copy is refused by its MD5
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'input.txt').write_text(text[:-1] + 'X', encoding='utf-8')
    with pytest.raises(DataError, match='MD5'):
        chars.load_corpus('shakespeare', data_dir=str(bad))


def ptb_dir(shared_data, tmp_path):
    """A data dir with the real PTB character files; ptb.char.train.txt is not
    available here, so the valid file stands in for it (its MD5 is not checked)."""
    d = tmp_path / 'ptbchar'
    d.mkdir()
    src = os.path.join(shared_data, 'ptb')
    shutil.copy(os.path.join(src, 'ptb.char.valid.txt'), d / 'ptb.char.train.txt')
    shutil.copy(os.path.join(src, 'ptb.char.valid.txt'), d / 'ptb.char.valid.txt')
    shutil.copy(os.path.join(src, 'ptb.char.test.txt'), d / 'ptb.char.test.txt')
    return d


def test_ptb_char_round_trip(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv('DLFS_DATA_DIR', raising=False)
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    d = ptb_dir(shared_data, tmp_path)
    c = chars.load_corpus('ptb-char', data_dir=str(d))
    raw = (d / 'ptb.char.test.txt').read_text(encoding='utf-8')
    lines = [line.split() for line in raw.split('\n')]
    lines = lines[:-1] if not lines[-1] else lines
    # token by token the ids are the file's characters, '\n' after every line
    expected_tokens = [t for line in lines for t in line + ['\n']]
    assert [c.vocab.tokens[i] for i in c.test] == expected_tokens
    assert '_' in c.vocab.tokens and ' ' not in c.vocab.tokens
    # printing turns '_' back into spaces; encoding display text gives the same ids
    shown = c.vocab.decode(c.test)
    assert shown.startswith("no it was n't black monday\n")
    np.testing.assert_array_equal(c.vocab.encode(shown), c.test)
    # sentence mode: one sequence per line
    s = chars.load_corpus('ptb-char', data_dir=str(d), sentences=True)
    assert (s.test == s.vocab.bos).sum() == len(lines)
    assert s.vocab.decode(s.test) == shown


def test_ptb_char_files_are_checked_and_split_flags_refused(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv('DLFS_DATA_DIR', raising=False)
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    d = ptb_dir(shared_data, tmp_path)
    with open(d / 'ptb.char.test.txt', 'a') as f:
        f.write('x')
    with pytest.raises(DataError, match='ptb.char.test.txt has MD5'):
        chars.load_corpus('ptb-char', data_dir=str(d))
    with pytest.raises(DataError, match='own train/valid/test files'):
        chars.load_corpus('ptb-char', (0.9, 0.05, 0.05), data_dir=str(d))


def test_a_ptb_char_file_as_a_single_corpus(shared_data):
    path = os.path.join(shared_data, 'ptb', 'ptb.char.valid.txt')
    c = chars.load_corpus(path, (0.8, 0.1, 0.1), fmt='ptb-char', max_chars=5000)
    assert len(c.train) == len(c.valid) == len(c.test) == 5000
    assert c.vocab.decode(c.train).startswith('consumers may want to move their telephones')

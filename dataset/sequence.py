"""The book's toy sequence data (chapters 7 and 8): addition and date formats.

``load_data(file_name='addition.txt', seed=1984)`` returns
``(x_train, t_train), (x_test, t_test)``: one row per line of the file, the
characters before the first '_' as the question, the rest of the line (the
'_' included: it is the decoder's start symbol) as the answer, padded with
spaces as in the file. Rows are shuffled with ``numpy.random.seed(seed)``
(no reseeding with ``seed=None``) and the last tenth is the test set.
``get_vocab()`` returns ``(char_to_id, id_to_char)``: ids in order of first
appearance, question before answer, line by line. As in the book the
vocabulary is one for the module: a second file loaded adds its new
characters after those of the first.

The file is looked for beside this module (``dataset/``, where the book
keeps it), then in ``data_dir``, ``$DLFS_DATA_DIR`` and the cache (each
directly or in ``sequence/``), else downloaded from the book's repository
into the cache; the two published files are verified by their MD5.
"""
import os

import numpy

from common.errors import DataError
from dataset.download import fetch, verify

MIRRORS = ['https://raw.githubusercontent.com/oreilly-japan/deep-learning-from-scratch-2/master/dataset/']
MD5 = {'addition.txt': '0be232e09ddbc99aa7c7f54b5081dbc0',
       'date.txt': '831a4a9fd17c969a1419bb4b86253987'}
SUBDIR = 'sequence'
HERE = os.path.dirname(os.path.abspath(__file__))

id_to_char = {}
char_to_id = {}


def path(file_name='addition.txt', data_dir=None):
    """The local, verified file ``file_name``: beside this module, in
    ``data_dir``, ``$DLFS_DATA_DIR`` or the cache, or downloaded (the
    published files only)."""
    md5 = MD5.get(file_name)
    beside = os.path.join(HERE, file_name)
    if os.path.isfile(beside):
        return verify(beside, md5)
    try:
        return fetch(file_name, SUBDIR, MIRRORS, md5, data_dir, download=md5 is not None, beside=HERE)
    except DataError:
        if md5 is not None:
            raise
        raise DataError(f"unknown sequence file {file_name!r}: use one of {', '.join(MD5)}, "
                        f"or put {file_name} in {HERE} or in $DLFS_DATA_DIR") from None


def _update_vocab(text):
    """Add the characters of ``text`` not yet known, in order of first appearance."""
    for char in dict.fromkeys(text):
        if char not in char_to_id:
            tmp_id = len(char_to_id)
            char_to_id[char] = tmp_id
            id_to_char[tmp_id] = char


def read_lines(file_path):
    """The file's lines as a (lines, width) array of code points, newlines
    dropped, and the column of the '_' that starts every answer."""
    with open(file_path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    if not lines:
        raise DataError(f"{file_path} is empty: give a file of 'question_answer' lines")
    width, split_at = len(lines[0]), lines[0].find('_')
    bad = [i for i, line in enumerate(lines) if len(line) != width or line.find('_') != split_at]
    if split_at < 0 or bad:
        i = bad[0] if bad else 0
        raise DataError(f"{file_path} line {i + 1} is not like line 1 (its length, {width}, and its first '_' "
                        f"at column {split_at + 1}): pad every line to the same question and answer widths")
    codes = numpy.frombuffer(''.join(lines).encode('utf-32-le'), dtype=numpy.uint32)
    return codes.reshape(len(lines), width), split_at


def load_data(file_name='addition.txt', seed=1984, data_dir=None):
    """``(x_train, t_train), (x_test, t_test)`` of the book's file ``file_name``
    ('addition.txt' or 'date.txt'): integer id arrays (questions, answers),
    shuffled with ``seed``, 90 % / 10 %."""
    codes, split_at = read_lines(path(file_name, data_dir))
    _update_vocab(_first_appearance(codes))

    table = numpy.zeros(int(codes.max()) + 1, dtype=int)
    for char, i in char_to_id.items():
        if ord(char) < len(table):
            table[ord(char)] = i
    x, t = table[codes[:, :split_at]], table[codes[:, split_at:]]

    indices = numpy.arange(len(x))
    if seed is not None:
        numpy.random.seed(seed)
    numpy.random.shuffle(indices)
    x, t = x[indices], t[indices]

    split = len(x) - len(x) // 10
    return (x[:split], t[:split]), (x[split:], t[split:])


def _first_appearance(codes):
    """The distinct characters of ``codes`` read row by row, in order of first appearance."""
    flat = codes.ravel()
    _, first = numpy.unique(flat, return_index=True)
    return ''.join(chr(flat[i]) for i in numpy.sort(first))


def get_vocab():
    return char_to_id, id_to_char

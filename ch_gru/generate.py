"""Sampling text from a trained language model, one token at a time.

The prime goes through the model once, as one sequence; after that every new
token is one call with T = 1 on the stateful recurrent layers, which carry the
state forward — the prefix is never run again. Scores come to the host
(:func:`common.backend.asnumpy`) and are turned into a draw there:

    p_i ∝ exp(s_i / temperature)   over the top_k highest scores s_i,
                                   excluding the skipped ids;
    temperature 0 takes the highest score (greedy).

Works for the word-level files of ``scripts/train_better_rnnlm.py`` and the
character-level files of ``scripts/train_char_rnnlm.py``; the file holds the
vocabulary and, for characters, how text maps onto it.
"""
import math

import numpy

from common.np import *  # noqa: F401,F403
from common import backend
from common.cuda.graph import predict_forward
from common.errors import CheckpointError, ConfigError, DataError
from dataset.chars import CharVocab

WORD_EOS = '<eos>'


class WordCodec:
    """Word models: whitespace-separated words; ``<eos>`` ends a line."""

    level = 'word'

    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.end_id = self.index.get(WORD_EOS)
        self.never = ()

    def token_id(self, token):
        return self.index.get(token)

    def start_ids(self, prime):
        """Ids of the prime's words; an empty prime starts after an ``<eos>``."""
        words = prime.split()
        if not words:
            if self.end_id is None:
                raise ConfigError(f'the model has no {WORD_EOS} to start from: give a --prime')
            return [self.end_id]
        unknown = sorted({w for w in words if w not in self.index})
        if unknown:
            shown = ', '.join(repr(w) for w in unknown[:8])
            raise DataError(f"the prime has {len(unknown)} word(s) not in the model's vocabulary ({shown}): "
                            f"use words the model was trained on (or <unk>)")
        return [self.index[w] for w in words]

    def render(self, prime, ids):
        """The prime and the generated words as text, ``<eos>`` as a line end."""
        lines, line = [], prime.split()
        for i in ids:
            if i == self.end_id:
                lines.append(' '.join(line))
                line = []
            else:
                line.append(self.tokens[i])
        return '\n'.join(lines + [' '.join(line)])


class CharCodec:
    """Character models: the :class:`dataset.chars.CharVocab` saved with them.
    In sentence mode every sample starts with ``<bos>`` and ends at ``<eos>``."""

    level = 'char'

    def __init__(self, vocab):
        self.vocab = vocab
        self.tokens = vocab.tokens
        self.end_id = vocab.eos if vocab.sentences else None
        self.never = (vocab.bos,) if vocab.sentences else ()     # <bos> is never a next token

    def token_id(self, token):
        if self.vocab.space is not None and token == ' ':
            token = self.vocab.space
        return self.vocab.index.get(token)

    def start_ids(self, prime):
        ids = self.vocab.encode(prime, source='the prime').tolist()
        if self.vocab.sentences:
            return [self.vocab.bos] + ids
        if not ids:
            if '\n' not in self.vocab.index:
                raise ConfigError('the model has no line break to start from: give a --prime')
            return [self.vocab.index['\n']]
        return ids

    def render(self, prime, ids):
        return prime + self.vocab.decode(ids)


def check_archive(path):
    """A clear error for a file that is not even an .npz archive (a log, a plot, a text)."""
    try:
        with open(path, 'rb') as f:
            magic = f.read(4)
    except OSError:
        return                          # load_model names the missing file
    if magic != b'PK\x03\x04':
        raise CheckpointError(f"{path} is not a model file (.npz) written by this framework: give the file "
                              f"a training script wrote with its parameters (e.g. <out-dir>/CharRnnlm.npz)")


def codec_from_meta(meta, source):
    vocab = meta.get('vocab')
    if not vocab:
        raise CheckpointError(f"{source} holds no vocabulary: use a file written by scripts/train_char_rnnlm.py "
                              f"or scripts/train_better_rnnlm.py")
    size = meta.get('config', {}).get('vocab_size')
    if size != len(vocab):
        raise CheckpointError(f"{source} holds a vocabulary of {len(vocab)} tokens for a model of {size}: "
                              f"the file is damaged; use an intact one")
    text = meta.get('text') or {}
    if text.get('level') == 'char':
        try:
            return CharCodec(CharVocab.from_meta(vocab, text))
        except DataError as exc:
            raise CheckpointError(f'{source}: {exc}') from None
    return WordCodec(vocab)


def sample_id(scores, rng, temperature=1.0, top_k=None, banned=()):
    """One id drawn from host scores (V,) as described in the module text;
    ties at the k-th highest score stay in."""
    s = numpy.array(scores, dtype=numpy.float64)
    if len(banned):
        s[list(banned)] = -numpy.inf
    if temperature == 0:
        return int(numpy.argmax(s))
    if top_k is not None and top_k < len(s):
        kth = numpy.partition(s, -top_k)[-top_k]
        s[s < kth] = -numpy.inf
    z = (s - s.max()) / temperature
    p = numpy.exp(z)
    cdf = numpy.cumsum(p)
    return int(min(numpy.searchsorted(cdf, rng.random() * cdf[-1], side='right'), len(s) - 1))


def generate_ids(model, start_ids, length, rng, temperature=1.0, top_k=None, skip_ids=(), end_id=None):
    """Up to ``length`` new ids after ``start_ids``, stopping before ``end_id``
    when it is drawn. The model's state is reset first."""
    model.reset_state()
    predict = predict_forward(model)                             # on CuPy: a CUDA graph per input shape
    xs = numpy.asarray(start_ids, dtype=numpy.int32)[None, :]
    scores = predict(backend.asarray(xs))                         # (1, len(start_ids), V): the prime once
    out = []
    while len(out) < length:
        next_id = sample_id(backend.asnumpy(scores[0, -1]), rng, temperature, top_k, skip_ids)
        if next_id == end_id:
            break
        out.append(next_id)
        if len(out) < length:
            scores = predict(backend.asarray(numpy.array([[next_id]], dtype=numpy.int32)))   # T = 1
    return out


class TextGenerator:
    """A trained model with the codec of its vocabulary."""

    def __init__(self, model, codec):
        self.model = model
        self.codec = codec

    @classmethod
    def load(cls, path):
        from ch_gru.rnnlm import load_model
        check_archive(path)
        model, meta = load_model(path)
        return cls(model, codec_from_meta(meta, path))

    @property
    def sentences(self):
        return self.codec.level == 'char' and self.codec.vocab.sentences

    def check_options(self, temperature=1.0, top_k=None, skip=(), stop_at_end=None):
        """Skip ids and the end id for these options, or a ConfigError saying
        which option does not fit the model."""
        V = len(self.codec.tokens)
        if not (temperature >= 0 and math.isfinite(temperature)):
            raise ConfigError(f'temperature must be a finite number >= 0, got {temperature}')
        if top_k is not None and not 1 <= top_k <= V:
            raise ConfigError(f'--top-k {top_k} is outside 1..{V} (the size of the model\'s vocabulary)')
        skip_ids = list(self.codec.never)
        for token in skip:
            i = self.codec.token_id(token)
            if i is None:
                raise ConfigError(f"--skip {token!r} is not a token of the model's vocabulary: "
                                  f"give one of its tokens (e.g. <unk> for PTB word models)")
            skip_ids.append(i)
        if len(set(skip_ids)) >= V:
            raise ConfigError('--skip removes every token of the vocabulary: skip fewer')
        if stop_at_end is None:
            stop_at_end = self.sentences
        if stop_at_end and self.codec.end_id is None:
            raise ConfigError('the model has no end token (it was trained on continuous text): '
                              'drop --stop-at-end')
        if stop_at_end and self.codec.end_id in skip_ids:
            raise ConfigError('the end token is skipped, so generation could never stop at it: '
                              'do not skip it, or drop --stop-at-end')
        return skip_ids, (self.codec.end_id if stop_at_end else None)

    def sample(self, prime='', length=200, temperature=1.0, top_k=None, seed=None, skip=(), stop_at_end=None,
               rng=None):
        """Text: the prime followed by up to ``length`` generated tokens."""
        skip_ids, end_id = self.check_options(temperature, top_k, skip, stop_at_end)
        start = self.codec.start_ids(prime)
        rng = rng if rng is not None else numpy.random.default_rng(seed)
        ids = generate_ids(self.model, start, length, rng, temperature, top_k, skip_ids, end_id)
        return self.codec.render(prime, ids)

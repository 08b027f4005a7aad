"""Sentence mode: padded batches never cross sentence boundaries, padding is
invisible to the loss and the gradients, the state is reset per group."""
import math

import numpy as np
import pytest

from ch_gru.rnnlm import Rnnlm
from common.errors import DataError
from common.optimizer import SGD
from common.batching.sentences import SentenceBatches, SentenceTrainer, eval_sentences, gather
from dataset.chars import CharVocab

LINES = ['to be or not', 'x', 'that is the question', 'ay', 'whether tis nobler in the mind to suffer',
         'the slings', 'and arrows', 'of outrageous fortune']


def corpus_and_vocab():
    vocab = CharVocab.build(['\n'.join(LINES)], sentences=True)
    return vocab.encode_lines(LINES), vocab


def sentences_of(corpus, vocab):
    """Each sequence <bos> ... <eos> as its own id array."""
    starts = np.flatnonzero(corpus == vocab.bos)
    return np.split(corpus, starts[1:])


def test_windows_hold_one_sentence_per_row_and_pad_with_ignore():
    corpus, vocab = corpus_and_vocab()
    xs, ts = corpus[:-1], corpus[1:]
    batches = SentenceBatches(xs, ts, vocab.bos, batch_size=3)
    seen = []
    for group in batches.groups:
        rows_x = [[] for _ in group]
        rows_t = [[] for _ in group]
        for positions, valid in batches.windows(group, time_size=7):
            x, t = gather(xs, ts, positions, valid)
            assert x.shape[1] <= 7
            assert (x >= 0).all()                      # padding reads real ids (for the embedding)
            assert (t[~valid] == -1).all() and (t[valid] >= 0).all()
            for r in range(len(group)):
                rows_x[r] += x[r][valid[r]].tolist()
                rows_t[r] += t[r][valid[r]].tolist()
        for rx, rt in zip(rows_x, rows_t):
            # one whole sequence per row: <bos> c1 .. cn as inputs, c1 .. cn <eos> as targets
            assert rx[0] == vocab.bos and vocab.bos not in rx[1:] and vocab.eos not in rx
            assert rt[-1] == vocab.eos and vocab.eos not in rt[:-1] and rt[:-1] == rx[1:]
            seen.append(vocab.decode(rx[1:]))
    assert sorted(seen) == sorted(LINES)                 # each sentence exactly once
    lengths = [len(batches.lengths[g]) for g in batches.groups]
    assert lengths == [3, 3, 2]
    for g in batches.groups:                             # bucketing: sorted by length
        assert list(batches.lengths[g]) == sorted(batches.lengths[g])


def test_corpus_must_start_with_bos():
    _, vocab = corpus_and_vocab()
    with pytest.raises(DataError, match='start with <bos>'):
        SentenceBatches(np.array([5, vocab.bos, 6]), np.array([vocab.bos, 6, vocab.eos]), vocab.bos, 2)


def model_for(vocab, seed=0):
    np.random.seed(seed)
    return Rnnlm(len(vocab), 6, 5, num_layers=2, dropout_ratio=0.0, tie_weights=False, dtype='float64')


def alone(model, sentence):
    """Summed negative log-likelihood of one sequence, run alone from a zero state."""
    model.reset_state()
    loss = float(model.forward(sentence[None, :-1], sentence[None, 1:], train_flg=False))
    return loss * (len(sentence) - 1)


@pytest.mark.parametrize('time_size', [4, 50])
def test_trainer_windows_give_exactly_the_per_sentence_losses(time_size):
    """The trainer's windows, state carried inside a group and reset between
    groups, give every sentence the loss it has when run alone: no state leaks
    across sentences and padding adds nothing."""
    corpus, vocab = corpus_and_vocab()
    model = model_for(vocab)
    expected = sum(alone(model, s) for s in sentences_of(corpus, vocab))
    trainer = SentenceTrainer(model, SGD(0.0), vocab.bos)
    xs, ts = corpus[:-1], corpus[1:]
    windows = trainer.epoch_iters(xs, ts, batch_size=3, time_size=time_size)
    model.reset_state()
    total, count = 0.0, 0
    for _ in range(2 * windows):          # two epochs: the order changes, the sum does not
        x, t = trainer.get_batch(xs, ts, 3, time_size)
        n = int((t != -1).sum())
        total += float(model.forward(x, t, train_flg=False)) * n
        count += n
    assert count == 2 * (len(xs) - (len(LINES) - 1))      # every pair but the (<eos>, <bos>) ones, twice
    assert total == pytest.approx(2 * expected, rel=1e-12)
    assert eval_sentences(model, corpus, vocab.bos, batch_size=3, time_size=time_size) == \
        pytest.approx(math.exp(expected / (count / 2)), rel=1e-12)


def test_padding_adds_nothing_to_the_gradients():
    """One padded batch (one window) against each sentence alone: the batch
    gradient is the token-weighted mean of the single-sentence gradients."""
    corpus, vocab = corpus_and_vocab()
    model = model_for(vocab, seed=3)
    sentences = sentences_of(corpus, vocab)
    total = sum(len(s) - 1 for s in sentences)
    expected = [np.zeros_like(g) for g in model.grads]
    for s in sentences:
        alone(model, s)
        model.backward()
        for e, g in zip(expected, model.grads):
            e += g * (len(s) - 1) / total
    xs, ts = corpus[:-1], corpus[1:]
    batches = SentenceBatches(xs, ts, vocab.bos, batch_size=len(sentences))
    (positions, valid), = batches.windows(batches.groups[0], time_size=100)
    assert (~valid).sum() > 50                            # plenty of padding
    x, t = gather(xs, ts, positions, valid)
    model.reset_state()
    model.forward(x, t, train_flg=False)
    model.backward()
    for e, g in zip(expected, model.grads):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-14)


class Recorder:
    """A 'model' that records resets and batches."""

    def __init__(self):
        self.params, self.grads = [np.zeros(1)], [np.zeros(1)]
        self.events = []

    def reset_state(self):
        self.events.append('reset')

    def forward(self, xs, ts, train_flg=True):
        self.events.append((xs.copy(), ts.copy()))
        return np.float64(1.0)

    def backward(self, dout=1):
        pass


def test_fit_resets_the_state_before_every_group_and_shuffles_groups():
    corpus, vocab = corpus_and_vocab()
    np.random.seed(0)
    model = Recorder()
    trainer = SentenceTrainer(model, SGD(0.1), vocab.bos)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=3, batch_size=2, time_size=8, eval_interval=0)
    batches = trainer.batches
    per_epoch = batches.window_count(8)
    forwards = [e for e in model.events if e != 'reset']
    assert len(forwards) == 3 * per_epoch
    # a reset comes right before the first window of every group, and only then
    first_rows = []
    for i, event in enumerate(model.events):
        if event == 'reset':
            xs = model.events[i + 1][0]
            assert (xs[:, 0] == vocab.bos).all()
            first_rows.append(tuple(xs[:, 1]))
    assert len(first_rows) == 3 * len(batches.groups)
    epochs = [first_rows[k * 4:(k + 1) * 4] for k in range(3)]
    assert all(sorted(e) == sorted(epochs[0]) for e in epochs)
    assert len(set(map(tuple, epochs))) > 1               # the group order changes between epochs


def test_a_split_needs_one_sentence_not_batch_times_time_tokens():
    """The length rule of continuous text (batch_size x time_size + 1 tokens)
    does not apply to sentence corpora: padded groups take any size."""
    from common.run.loop import check_corpus
    corpus, vocab = corpus_and_vocab()
    one = corpus[:len(LINES[0]) + 2]                  # <bos> to be or not <eos>
    check_corpus(one, 'test corpus', len(vocab), 32, 64, '--eval-batch-size', sentences=True)
    with pytest.raises(DataError, match='needs at least 2049'):
        check_corpus(one, 'test corpus', len(vocab), 32, 64, '--eval-batch-size')
    for short in (one[:0], one[:1]):
        with pytest.raises(DataError, match='the test corpus has no sentence'):
            check_corpus(short, 'test corpus', len(vocab), 32, 64, '--eval-batch-size', sentences=True)
    assert SentenceTrainer.sentence_mode

"""Text generation: sampling rules, step-by-step state, reproducibility, word
and character model files, and the errors a user can run into."""
import numpy as np
import pytest

from ch_gru.better_rnnlm import BetterRnnlm
from ch_gru.generate import CharCodec, TextGenerator, generate_ids, sample_id
from ch_gru.rnnlm import Rnnlm
from common.errors import CheckpointError, ConfigError, DataError
from common.optimizer import Adam
from common.batching.sentences import SentenceTrainer
from common.trainer import RnnlmTrainer
from dataset.chars import CharVocab


def test_sample_id_rules():
    scores = np.array([0.5, 3.0, -1.0, 2.5, 2.9, 0.0])
    rng = np.random.default_rng(0)
    assert sample_id(scores, rng, temperature=0) == 1
    assert sample_id(scores, rng, temperature=1e-4) == 1                    # temperature -> 0 is greedy
    assert sample_id(scores, rng, temperature=0, banned=[1]) == 4
    draws = [sample_id(scores, rng, temperature=5.0, top_k=3) for _ in range(600)]
    assert set(draws) == {1, 3, 4}                                           # the three highest, all of them
    draws = [sample_id(scores, rng, temperature=5.0, top_k=3, banned=[4]) for _ in range(600)]
    assert set(draws) == {1, 3, 0}
    assert {sample_id(scores, rng, top_k=1) for _ in range(50)} == {1}
    # temperature 1 follows the softmax
    draws = np.array([sample_id(scores, rng) for _ in range(20000)])
    p = np.exp(scores) / np.exp(scores).sum()
    np.testing.assert_allclose(np.bincount(draws, minlength=6) / len(draws), p, atol=0.015)


def small_model(V=11, seed=0, cell='gru'):
    np.random.seed(seed)
    model = Rnnlm(V, 6, 7, num_layers=2, dropout_ratio=0.3, cell=cell, tie_weights=False)
    for p in model.params:                  # larger weights than the initial ones: a peaky model
        p *= 8
    return model


def greedy_by_rerunning(model, start, length):
    """The greedy continuation computed the slow way: the whole prefix from a
    zero state for every token."""
    seq = list(start)
    for _ in range(length):
        model.reset_state()
        scores = model.predict(np.array([seq]))
        seq.append(int(np.argmax(scores[0, -1])))
    return seq[len(start):]


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
def test_step_by_step_equals_rerunning_the_prefix(cell):
    model = small_model(cell=cell)
    calls = []
    predict = model.predict

    def recording_predict(xs, train_flg=False):
        calls.append(xs.shape)
        return predict(xs, train_flg)
    expected = greedy_by_rerunning(model, [3, 1, 4], 12)
    model.predict = recording_predict
    rng = np.random.default_rng(0)
    assert generate_ids(model, [3, 1, 4], 12, rng, temperature=0) == expected
    assert calls == [(1, 3)] + [(1, 1)] * 11              # the prime once, then one token per call
    assert generate_ids(model, [3, 1, 4], 12, rng, temperature=1e-4) == expected
    assert generate_ids(model, [3, 1, 4], 12, rng, top_k=1) == expected


def test_reproducible_for_a_seed_and_skip_respected():
    model = small_model()
    a = generate_ids(model, [2], 40, np.random.default_rng(7))
    b = generate_ids(model, [2], 40, np.random.default_rng(7))
    c = generate_ids(model, [2], 40, np.random.default_rng(8))
    assert a == b and a != c
    greedy = generate_ids(model, [2], 20, None, temperature=0)
    skipped = generate_ids(model, [2], 20, np.random.default_rng(0), temperature=0, skip_ids=[greedy[0]])
    assert greedy[0] not in skipped
    many = generate_ids(model, [2], 300, np.random.default_rng(0), skip_ids=[0, 5])
    assert len(many) == 300 and not {0, 5} & set(many)
    stop = greedy[5]
    assert generate_ids(model, [2], 20, None, temperature=0, end_id=stop) == greedy[:greedy.index(stop)]


def train(model, corpus, trainer_cls=RnnlmTrainer, iters=1, **kwargs):
    trainer = trainer_cls(model, Adam(0.02), **kwargs)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=iters, batch_size=4, time_size=16, max_grad=5.0,
                eval_interval=0)
    return trainer


def test_tiny_model_overfits_a_short_text_and_recites_it():
    text = 'the quick brown fox jumps over the lazy dog.\n' * 12
    vocab = CharVocab.build([text])
    corpus = vocab.encode(text)
    np.random.seed(0)
    model = Rnnlm(len(vocab), 16, 48, num_layers=1, dropout_ratio=0.0, tie_weights=False)
    trainer = train(model, corpus, iters=60)
    assert np.log(trainer.epoch_ppl) < 0.1                     # nats/char, from ln(28) at the start
    generator = TextGenerator(model, CharCodec(vocab))
    assert generator.sample('the quick', 36, temperature=0) == 'the quick brown fox jumps over the lazy dog.\n'


def test_sentence_model_stops_at_the_end_token():
    lines = ['to be or not to be', 'that is the question']
    vocab = CharVocab.build(['\n'.join(lines)], sentences=True)
    corpus = vocab.encode_lines(lines * 8)
    np.random.seed(0)
    model = Rnnlm(len(vocab), 16, 48, num_layers=1, dropout_ratio=0.0, tie_weights=False)
    trainer = train(model, corpus, SentenceTrainer, iters=80, bos_id=vocab.bos)
    assert np.log(trainer.epoch_ppl) < 0.25
    generator = TextGenerator(model, CharCodec(vocab))
    assert generator.sentences
    assert generator.sample('that', 200, temperature=0) == 'that is the question'
    assert generator.sample('to', 200, temperature=0) == 'to be or not to be'
    # without the stop the model goes on into a new line (a decoded <eos>)
    assert generator.sample('that', 30, temperature=0, stop_at_end=False).startswith('that is the question\n')
    out = generator.sample('', 200, seed=3)
    assert '\n' not in out and len(out) < 200


def test_word_model_file_from_the_word_script(tmp_path):
    words = ['<unk>', 'the', 'cat', 'sat', 'on', 'mat', '<eos>']
    np.random.seed(1)
    model = BetterRnnlm(vocab_size=len(words), wordvec_size=8, hidden_size=8)
    path = model.save_params(str(tmp_path / 'BetterRnnlm.npz'), vocab=words)     # as train_better_rnnlm.py
    generator = TextGenerator.load(path)
    assert generator.codec.level == 'word'
    text = generator.sample('the cat', 60, seed=0, skip=['<unk>'])
    assert text.startswith('the cat') and '<unk>' not in text
    assert len(text.split()) == 2 + 60 - text.count('\n')
    assert set(text.split()) <= set(words) - {'<unk>', '<eos>'}
    again = TextGenerator.load(path).sample('the cat', 60, seed=0, skip=['<unk>'])
    assert again == text
    short = generator.sample('the', 60, seed=0, stop_at_end=True)
    assert '\n' not in short
    with pytest.raises(DataError, match=r"1 word\(s\) not in the model's vocabulary \('dog'\)"):
        generator.sample('the dog', 5)


def test_char_model_file_round_trip(tmp_path):
    vocab = CharVocab.build(['abc def\n'])
    np.random.seed(0)
    model = Rnnlm(len(vocab), 4, 4, num_layers=1)
    path = model.save_params(str(tmp_path / 'c.npz'), vocab=vocab.tokens, meta={'text': vocab.meta()})
    generator = TextGenerator.load(path)
    assert generator.codec.level == 'char' and generator.codec.vocab.tokens == vocab.tokens
    a = generator.sample('ab', 50, seed=4, temperature=0.7, top_k=3)
    assert a.startswith('ab') and set(a) <= set('abc def\n') and len(a) == 52
    assert TextGenerator.load(path).sample('ab', 50, seed=4, temperature=0.7, top_k=3) == a


@pytest.mark.parametrize('options,message', [
    ({'top_k': 99}, r'--top-k 99 is outside 1\.\.8'),
    ({'skip': ['<unk>']}, "--skip '<unk>' is not a token"),
    ({'stop_at_end': True}, 'no end token'),
    ({'temperature': -1.0}, 'temperature must be'),
])
def test_options_that_do_not_fit_the_model(tmp_path, options, message):
    vocab = CharVocab.build(['abc def\n'])
    generator = TextGenerator(Rnnlm(len(vocab), 4, 4, num_layers=1), CharCodec(vocab))
    with pytest.raises(ConfigError, match=message):
        generator.sample('a', 5, **options)
    with pytest.raises(DataError, match=r"not in the vocabulary \('Z'\)"):
        generator.sample('aZ', 5)


def test_files_that_are_not_usable_model_files(tmp_path):
    (tmp_path / 'log.jsonl').write_text('{"event": "start"}\n')
    with pytest.raises(CheckpointError, match='is not a model file'):
        TextGenerator.load(str(tmp_path / 'log.jsonl'))
    model = Rnnlm(5, 4, 4, num_layers=1)
    path = model.save_params(str(tmp_path / 'novocab.npz'))
    with pytest.raises(CheckpointError, match='holds no vocabulary'):
        TextGenerator.load(path)
    path = model.save_params(str(tmp_path / 'wrongvocab.npz'), vocab=['a', 'b'])
    with pytest.raises(CheckpointError, match='vocabulary of 2 tokens for a model of 5'):
        TextGenerator.load(path)

"""common.util: eval_perplexity, clip_grads and the book's truncated-BPTT windows on hand-checkable
inputs; the word-vector utilities of chapters 2-4 against the book's printed numbers; eval_seq2seq."""
import math

import numpy as np
import pytest

from common.errors import DataError
from common.util import (analogy, clip_grads, convert_one_hot, cos_similarity, create_co_matrix,
                         create_contexts_target, eval_perplexity, eval_seq2seq, most_similar, normalize, ppmi,
                         preprocess, window_indices)
from helpers.fakes import Recorder
from helpers.processes import run_python


def test_eval_perplexity_windows_and_value():
    corpus = np.arange(101)
    model = Recorder(math.log(7.0))
    ppl = eval_perplexity(model, corpus, batch_size=2, time_size=10)
    assert ppl == pytest.approx(7.0)
    assert len(model.batches) == 5                  # (101 - 1) // (2 * 10)
    xs, ts, train_flg = model.batches[1]
    np.testing.assert_array_equal(xs, [np.arange(10, 20), np.arange(60, 70)])   # jump = 50
    np.testing.assert_array_equal(ts, xs + 1)
    assert train_flg is False


def test_eval_perplexity_too_short_corpus():
    with pytest.raises(DataError, match='too short'):
        eval_perplexity(Recorder(0.0), np.arange(20), batch_size=10, time_size=35)


def test_clip_grads(rng):
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    norm = np.sqrt(sum((g ** 2).sum() for g in grads))
    before = [g.copy() for g in grads]
    assert float(clip_grads(grads, 2 * norm)) == pytest.approx(norm)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)             # under the limit: untouched
    clip_grads(grads, norm / 4)
    assert np.sqrt(sum((g ** 2).sum() for g in grads)) == pytest.approx(norm / 4, rel=1e-5)
    np.testing.assert_allclose(grads[0] / before[0], grads[1][0] / before[1][0])   # direction kept


def test_window_indices_wrap():
    idx = window_indices(np.array([0, 8]), 1, 3, 10)
    np.testing.assert_array_equal(idx, [[1, 2, 3], [9, 0, 1]])


# -- chapters 2-4: the book's "You say goodbye and I say hello." ---------------------

TEXT = 'You say goodbye and I say hello.'
BOOK_CO_MATRIX = [[0, 1, 0, 0, 0, 0, 0],
                  [1, 0, 1, 0, 1, 1, 0],
                  [0, 1, 0, 1, 0, 0, 0],
                  [0, 0, 1, 0, 1, 0, 0],
                  [0, 1, 0, 1, 0, 0, 0],
                  [0, 1, 0, 0, 0, 0, 1],
                  [0, 0, 0, 0, 0, 1, 0]]
BOOK_PPMI = [[0., 1.807, 0., 0., 0., 0., 0.],               # the book's print with precision=3
             [1.807, 0., 0.807, 0., 0.807, 0.807, 0.],
             [0., 0.807, 0., 1.807, 0., 0., 0.],
             [0., 0., 1.807, 0., 1.807, 0., 0.],
             [0., 0.807, 0., 1.807, 0., 0., 0.],
             [0., 0.807, 0., 0., 0., 0., 2.807],
             [0., 0., 0., 0., 0., 2.807, 0.]]


def book_example():
    corpus, word_to_id, id_to_word = preprocess(TEXT)
    return corpus, word_to_id, id_to_word, create_co_matrix(corpus, len(word_to_id))


def naive_co_matrix(corpus, vocab_size, window_size):
    C = np.zeros((vocab_size, vocab_size), dtype=np.int32)
    for idx, w in enumerate(corpus):
        for d in range(1, window_size + 1):
            for j in (idx - d, idx + d):
                if 0 <= j < len(corpus):
                    C[w, corpus[j]] += 1
    return C


def naive_ppmi(C, eps=1e-8):
    N, S = C.sum(), C.sum(axis=0)
    M = np.zeros(C.shape, dtype=np.float32)
    with np.errstate(divide='ignore', invalid='ignore'):
        for i in range(C.shape[0]):
            for j in range(C.shape[1]):
                M[i, j] = max(0, np.log2(C[i, j] * N / (S[j] * S[i]) + eps))
    return M


def test_preprocess_ids_in_order_of_first_appearance():
    corpus, word_to_id, id_to_word = preprocess(TEXT)
    np.testing.assert_array_equal(corpus, [0, 1, 2, 3, 4, 1, 5, 6])
    assert word_to_id == {'you': 0, 'say': 1, 'goodbye': 2, 'and': 3, 'i': 4, 'hello': 5, '.': 6}
    assert id_to_word == {i: w for w, i in word_to_id.items()}


def test_co_matrix_and_ppmi_are_the_books():
    _, _, _, C = book_example()
    np.testing.assert_array_equal(C, BOOK_CO_MATRIX)
    assert C.dtype == np.int32
    W = ppmi(C)
    assert W.dtype == np.float32
    np.testing.assert_allclose(W, BOOK_PPMI, atol=5e-4)
    np.testing.assert_array_equal(W, naive_ppmi(C))


def test_co_matrix_wider_windows_match_the_loop(rng):
    corpus = rng.integers(0, 9, size=60)
    for window in (1, 2, 3, 70):
        np.testing.assert_array_equal(create_co_matrix(corpus, 9, window), naive_co_matrix(corpus, 9, window))


def test_ppmi_of_unused_words_is_zero_and_verbose_reports(capsys):
    C = np.array([[0, 2, 0], [2, 0, 0], [0, 0, 0]], dtype=np.int32)     # word 2 never occurs: 0 / 0
    W = ppmi(C, verbose=True)
    np.testing.assert_array_equal(W, naive_ppmi(C))
    assert np.isfinite(W).all() and W[2].sum() == 0
    assert capsys.readouterr().out.strip().endswith('100.0% done')


def test_most_similar_prints_the_books_lines(capsys):
    _, word_to_id, id_to_word, C = book_example()
    assert cos_similarity(C[0], C[4]) == pytest.approx(0.7071067691154799)
    most_similar('you', word_to_id, id_to_word, C, top=5)
    assert capsys.readouterr().out == ('\n[query] you\n'
                                       ' goodbye: 0.7071067691154799\n i: 0.7071067691154799\n'
                                       ' hello: 0.7071067691154799\n say: 0.0\n and: 0.0\n')
    most_similar('cat', word_to_id, id_to_word, C)
    assert capsys.readouterr().out == 'cat is not found\n'


def test_contexts_target_and_one_hot():
    corpus, _, _, _ = book_example()
    contexts, target = create_contexts_target(corpus, window_size=1)
    np.testing.assert_array_equal(contexts, [[0, 2], [1, 3], [2, 4], [3, 1], [4, 5], [1, 6]])
    np.testing.assert_array_equal(target, [1, 2, 3, 4, 1, 5])
    contexts2, target2 = create_contexts_target(corpus, window_size=2)
    np.testing.assert_array_equal(contexts2, [[0, 1, 3, 4], [1, 2, 4, 1], [2, 3, 1, 5], [3, 4, 5, 6]])
    np.testing.assert_array_equal(target2, [2, 3, 4, 1])
    one_hot = convert_one_hot(target, 7)
    assert one_hot.shape == (6, 7) and one_hot.dtype == np.int32
    np.testing.assert_array_equal(one_hot.argmax(axis=1), target)
    assert one_hot.sum() == 6
    ctx = convert_one_hot(contexts, 7)
    assert ctx.shape == (6, 2, 7)
    np.testing.assert_array_equal(ctx.argmax(axis=2), contexts)


def test_analogy_and_normalize(capsys):
    word_to_id = {'man': 0, 'king': 1, 'woman': 2, 'queen': 3, 'apple': 4}
    id_to_word = {i: w for w, i in word_to_id.items()}
    W = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1]], dtype=np.float32)
    analogy('man', 'king', 'woman', word_to_id, id_to_word, W, top=2, answer='queen')
    q = np.array([0, 1, 1]) / np.sqrt(2)           # king - man + woman, normalised
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ['', '[analogy] man:king = woman:?']
    assert lines[2].startswith('==>queen:') and float(lines[2].split(':')[1]) == pytest.approx(W[3] @ q)
    assert [line.split(':')[0] for line in lines[3:]] == [' queen', ' apple']
    assert float(lines[3].split(': ')[1]) == pytest.approx(np.sqrt(2))
    analogy('man', 'king', 'cat', word_to_id, id_to_word, W)
    assert capsys.readouterr().out == 'cat is not found\n'
    x = np.array([[3., 4.], [0., 2.]])
    assert normalize(x) is x
    np.testing.assert_allclose(x, [[0.6, 0.8], [0., 1.]])
    np.testing.assert_allclose(normalize(np.array([1., 1.])), [2 ** -0.5] * 2)


# -- chapters 7-8: eval_seq2seq ----------------------------------------------------------

class Answers:
    """A 'model' whose generate returns a fixed answer and records its call."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def generate(self, xs, start_id, sample_size):
        self.calls.append((xs.copy(), start_id, sample_size))
        return [np.int64(i) for i in self.answer]


ID_TO_CHAR = dict(enumerate('0123456789+_ '))


def test_eval_seq2seq_right_and_wrong(capsys, monkeypatch):
    question = np.array([[7, 1, 10, 1, 1, 8, 12]])        # '71+118 '
    correct = np.array([[11, 1, 8, 9, 12]])               # '_189 '
    model = Answers([1, 8, 9, 12])
    assert eval_seq2seq(model, question, correct, ID_TO_CHAR) == 1
    assert capsys.readouterr().out == ''                  # quiet without verbos
    xs, start_id, size = model.calls[0]
    np.testing.assert_array_equal(xs, question)
    assert (start_id, size) == (11, 4)

    assert eval_seq2seq(model, question, correct, ID_TO_CHAR, verbos=True) == 1
    assert capsys.readouterr().out == 'Q 71+118 \nT 189 \n\033[92m☑\033[0m 189 \n---\n'
    wrong = Answers([1, 8, 8, 12])
    assert eval_seq2seq(wrong, question[:, ::-1], correct, ID_TO_CHAR, verbos=True, is_reverse=True) == 0
    assert capsys.readouterr().out == 'Q 71+118 \nT 189 \n\033[91m☒\033[0m 188 \n---\n'
    monkeypatch.setattr('common.util.os.name', 'nt')
    eval_seq2seq(wrong, question, correct, ID_TO_CHAR, verbos=True)
    assert capsys.readouterr().out.splitlines()[2] == 'X 188 '


def test_word_vector_utilities_on_the_gpu_path():
    """The same calls through the stand-in CuPy (device arrays, 0-d results,
    no dict lookups by device index) print the same as on NumPy."""
    code = ('from common.np import np\n'
            'from common.util import *\n'
            "corpus, w2i, i2w = preprocess('You say goodbye and I say hello.')\n"
            'C = create_co_matrix(corpus, len(w2i), window_size=2)\n'
            'W = ppmi(C)\n'
            'print(type(W).__module__, int(C.sum()), round(float(W.sum()), 4))\n'
            "most_similar('you', w2i, i2w, W, top=3)\n"
            "analogy('you', 'say', 'i', w2i, i2w, W + 0.5, top=2, answer='hello')\n"
            'ctx, tgt = create_contexts_target(corpus, 2)\n'
            'print(int(convert_one_hot(ctx, len(w2i)).sum()), int(tgt.sum()))\n')
    cpu = run_python(code, {})
    gpu = run_python(code, {'DLFS_GPU': '1'}, fake_cupy=True)
    assert cpu.returncode == 0, cpu.stderr
    assert gpu.returncode == 0, gpu.stderr
    first_cpu, *rest_cpu = cpu.stdout.splitlines()
    first_gpu, *rest_gpu = gpu.stdout.splitlines()
    assert first_cpu.split()[0] == 'numpy' and first_gpu.split()[0] == 'cupy'
    assert first_cpu.split()[1:] == first_gpu.split()[1:]
    assert rest_cpu == rest_gpu and len(rest_cpu) == 11

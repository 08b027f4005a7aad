"""The book's utilities, with its names, signatures and printed output.

Chapters 2-4 (word vectors): :func:`preprocess`, :func:`cos_similarity`,
:func:`most_similar`, :func:`convert_one_hot`, :func:`create_co_matrix`,
:func:`ppmi`, :func:`create_contexts_target`, :func:`analogy`,
:func:`normalize`. Chapters 5-8 (training): :func:`eval_perplexity`,
:func:`clip_grads`, :func:`to_cpu`, :func:`to_gpu`, :func:`eval_seq2seq`.
Where the book loops over words or matrix entries these are whole-array
expressions, and they run unchanged on CuPy: ids that index Python dicts are
brought to the host first.
"""
import inspect
import os

import numpy

from common.np import *  # noqa: F401,F403
from common import backend
from common.cuda.graph import eval_forward
from common.errors import DataError
from common.run.progress import progress


def to_cpu(x):
    """A NumPy copy of ``x`` (returned as is when it already is one)."""
    return backend.asnumpy(x)


def to_gpu(x):
    """``x`` on the active backend: a CuPy array when config.GPU is on."""
    return backend.asarray(x)


def window_indices(offsets, start, time_size, size):
    """Indices of the book's truncated-BPTT windows, all rows at once.

    Row i reads ``time_size`` consecutive positions from ``offsets[i] + start``,
    wrapping around a corpus of ``size``: (len(offsets), time_size) indices.
    """
    return (offsets[:, None] + (start + np.arange(time_size))[None, :]) % size


def clip_grads(grads, max_norm):
    """Scale all gradients in place so that their joint L2 norm is at most
    ``max_norm``; returns the norm before clipping (a backend scalar).

    ‖g‖ = √Σ_i ⟨g_i, g_i⟩, each term one BLAS dot product on NumPy, one
    reduction kernel on CuPy (no g² temporaries, no cuBLAS: a CUDA graph can hold it).
    The scale min(1, max_norm / (‖g‖ + 1e-6)) is applied unconditionally so
    the norm never has to be read back to the host (no GPU synchronisation).
    """
    total = sum(backend.sum_squares(g) for g in grads)
    norm = np.sqrt(total)
    rate = np.minimum(max_norm / (norm + 1e-6), 1.0)
    for g in grads:
        g *= rate
    return norm


def eval_perplexity(model, corpus, batch_size=10, time_size=35):
    """exp(mean cross-entropy) of ``model`` on ``corpus`` (1-D ids), read with
    the book's batching: row i starts at i · ((len − 1) // batch_size) and the
    rows advance together ``time_size`` tokens per step. Dropout is off.
    The model's stateful layers carry state across the windows; call
    ``model.reset_state()`` before if it should start fresh.
    """
    total_loss, windows = eval_loss(model, corpus, batch_size, time_size)
    return float(numpy.exp(total_loss / windows))


def eval_loss(model, corpus, batch_size=10, time_size=35, rows=slice(None)):
    """``(summed loss, windows)`` of :func:`eval_perplexity`'s pass, reading
    only the batch's ``rows`` (a data-parallel rank's block; all by default)."""
    corpus = backend.asarray(corpus)
    corpus_size = len(corpus)
    max_iters = (corpus_size - 1) // (batch_size * time_size)
    if max_iters < 1:
        raise DataError(f"corpus of {corpus_size} tokens is too short to evaluate with batch_size={batch_size} "
                        f"and time_size={time_size}: it needs at least {batch_size * time_size + 1} tokens")
    jump = (corpus_size - 1) // batch_size
    offsets = np.arange(batch_size)[rows] * jump
    # Models without dropout (the book's SimpleRnnlm) take no train_flg.
    eval_kwargs = {'train_flg': False} if 'train_flg' in inspect.signature(model.forward).parameters else {}
    forward = eval_forward(model, eval_kwargs)    # on CuPy: CUDA graphs of the forward pass
    total_loss = 0
    for iters in progress(range(max_iters), total=max_iters, desc='eval', unit='batch'):
        idx = window_indices(offsets, iters * time_size, time_size, corpus_size)
        xs = corpus[idx]
        ts = corpus[(idx + 1) % corpus_size]
        total_loss += forward(xs, ts)
    return float(total_loss), max_iters


# -- chapters 2-4: words, co-occurrence, word vectors -------------------------------

def preprocess(text):
    """``(corpus, word_to_id, id_to_word)`` of ``text``: lower-cased, '.' split
    off as a word, split at single spaces; ids in order of first appearance."""
    text = text.lower()
    text = text.replace('.', ' .')
    words = text.split(' ')

    word_to_id, id_to_word = {}, {}
    for word in words:
        if word not in word_to_id:
            new_id = len(word_to_id)
            word_to_id[word] = new_id
            id_to_word[new_id] = word

    corpus = np.array([word_to_id[w] for w in words])
    return corpus, word_to_id, id_to_word


def cos_similarity(x, y, eps=1e-8):
    """x·y / (‖x‖‖y‖), each norm plus ``eps`` (a zero vector gives 0, not nan)."""
    nx = x / (np.sqrt(np.sum(x ** 2)) + eps)
    ny = y / (np.sqrt(np.sum(y ** 2)) + eps)
    return np.dot(nx, ny)


def _similarities(word_matrix, query_vec, eps=1e-8):
    """:func:`cos_similarity` of every row of ``word_matrix`` with
    ``query_vec`` at once, as host float64 (the book fills a float64 array)."""
    nx = word_matrix / (np.sqrt(np.sum(word_matrix ** 2, axis=1, keepdims=True)) + eps)
    ny = query_vec / (np.sqrt(np.sum(query_vec ** 2)) + eps)
    return backend.asnumpy(nx @ ny).astype(numpy.float64)


def _ranked(similarity):
    """Ids by decreasing similarity, as Python ints (dict keys on any backend).
    Ties keep id order (a stable sort, as NumPy's sort of a short array was
    when the book printed its results; its default sort no longer is)."""
    return [int(i) for i in numpy.argsort(-1 * similarity, kind='stable')]


def most_similar(query, word_to_id, id_to_word, word_matrix, top=5):
    """Print the ``top`` words most similar (cosine) to ``query``, as the book:
    ``[query] you`` then `` goodbye: 0.7071067691154799`` lines."""
    if query not in word_to_id:
        print('%s is not found' % query)
        return

    print('\n[query] ' + query)
    query_vec = word_matrix[word_to_id[query]]
    similarity = _similarities(word_matrix[:len(id_to_word)], query_vec)

    count = 0
    for i in _ranked(similarity):
        if id_to_word[i] == query:
            continue
        print(' %s: %s' % (id_to_word[i], similarity[i]))
        count += 1
        if count >= top:
            return


def convert_one_hot(corpus, vocab_size):
    """One-hot int32 vectors of the ids in ``corpus`` (1-D or 2-D):
    shape ``corpus.shape + (vocab_size,)``."""
    return (corpus[..., None] == np.arange(vocab_size)).astype(np.int32)


def create_co_matrix(corpus, vocab_size, window_size=1):
    """The (vocab_size, vocab_size) int32 co-occurrence matrix: C[w, c] counts
    the times c stands within ``window_size`` words left or right of w.

    All pairs at distance d (d = 1 … window_size) at once: (corpus[d:],
    corpus[:-d]) are (word, left neighbour), the reverse (word, right
    neighbour); the pairs are counted by one bincount of w · V + c."""
    corpus = np.asarray(corpus)
    V = vocab_size
    pairs = []
    for d in range(1, window_size + 1):
        if d < len(corpus):
            left, right = corpus[:-d], corpus[d:]
            pairs += [right * V + left, left * V + right]
    if not pairs:
        return np.zeros((V, V), dtype=np.int32)
    counts = np.bincount(np.concatenate(pairs).astype(np.int64), minlength=V * V)
    return counts.reshape(V, V).astype(np.int32)


def ppmi(C, verbose=False, eps=1e-8):
    """Positive pointwise mutual information of a co-occurrence matrix, float32:

        M[i, j] = max(0, log2(C[i, j] · N / (S[i] · S[j]) + eps)),
        N = Σ C,  S[j] = Σ_i C[i, j]

    (an entry whose ratio is undefined, 0/0, is 0, as the book's max(0, nan)).
    Computed in blocks of rows, so the float64 temporaries stay small for a
    big vocabulary; ``verbose`` prints the book's ``12.3% done`` per block."""
    M = np.zeros(C.shape, dtype=np.float32)
    N = np.sum(C)
    S = np.sum(C, axis=0)
    rows = C.shape[0]
    step = max(1, (1 << 22) // max(C.shape[1], 1))
    with numpy.errstate(divide='ignore', invalid='ignore'):
        for lo in range(0, rows, step):
            hi = min(lo + step, rows)
            pmi = np.log2(C[lo:hi] * N / (S[lo:hi, None] * S[None, :]) + eps)
            M[lo:hi] = np.where(pmi > 0, pmi, 0)
            if verbose:
                print('%.1f%% done' % (100 * hi / rows))
    return M


def create_contexts_target(corpus, window_size=1):
    """``(contexts, target)``: for every position with ``window_size`` words on
    both sides, the ids around it (2·window_size of them, left to right, the
    centre left out) and the id at it."""
    corpus = np.asarray(corpus)
    offsets = np.array([t for t in range(-window_size, window_size + 1) if t != 0])
    centres = np.arange(window_size, len(corpus) - window_size)
    target = corpus[window_size:len(corpus) - window_size]
    return corpus[centres[:, None] + offsets[None, :]], target


def analogy(a, b, c, word_to_id, id_to_word, word_matrix, top=5, answer=None):
    """Print the ``top`` words closest to b − a + c (normalised), leaving out
    a, b and c: ``[analogy] man:king = woman:?`` then `` queen: 5.76`` lines;
    with ``answer`` also ``==>queen:5.76``, its own score."""
    for word in (a, b, c):
        if word not in word_to_id:
            print('%s is not found' % word)
            return

    print('\n[analogy] ' + a + ':' + b + ' = ' + c + ':?')
    a_vec, b_vec, c_vec = (word_matrix[word_to_id[w]] for w in (a, b, c))
    query_vec = normalize(b_vec - a_vec + c_vec)

    similarity = backend.asnumpy(np.dot(word_matrix, query_vec))
    if answer is not None:
        print("==>" + answer + ":" + str(similarity[word_to_id[answer]]))

    count = 0
    for i in _ranked(similarity):
        if numpy.isnan(similarity[i]):
            continue
        if id_to_word[i] in (a, b, c):
            continue
        print(' {0}: {1}'.format(id_to_word[i], similarity[i]))
        count += 1
        if count >= top:
            return


def normalize(x):
    """Divide ``x`` in place by its L2 norm (each row, for a matrix); returns it."""
    if x.ndim == 2:
        s = np.sqrt((x * x).sum(1))
        x /= s.reshape((s.shape[0], 1))
    elif x.ndim == 1:
        s = np.sqrt((x * x).sum())
        x /= s
    return x


# -- chapters 7-8: sequence to sequence ----------------------------------------------

COLORS = {'ok': '\033[92m', 'fail': '\033[91m', 'close': '\033[0m'}


def eval_seq2seq(model, question, correct, id_to_char, verbos=False, is_reverse=False):
    """1 if ``model.generate`` answers ``question`` (1, T_q) exactly with
    ``correct`` (1, 1 + T_a: its first id is the start id), else 0.

    With ``verbos`` prints the book's four lines: ``Q 71+118`` (the question
    turned back when ``is_reverse``), ``T 189`` (the answer without its
    start id), the guess after a green ☑ or red ☒ (O / X on Windows), and ``---``."""
    correct = backend.asnumpy(correct).flatten()
    start_id = int(correct[0])
    correct = correct[1:]
    guess = model.generate(backend.asarray(question), start_id, len(correct))

    question = ''.join([id_to_char[int(c)] for c in backend.asnumpy(question).flatten()])
    correct = ''.join([id_to_char[int(c)] for c in correct])
    guess = ''.join([id_to_char[int(c)] for c in guess])

    if verbos:
        if is_reverse:
            question = question[::-1]
        print('Q', question)
        print('T', correct)
        if os.name == 'nt':
            mark = 'O' if correct == guess else 'X'
        else:
            color = COLORS['ok'] if correct == guess else COLORS['fail']
            mark = color + ('☑' if correct == guess else '☒') + COLORS['close']
        print(mark + ' ' + guess)
        print('---')

    return 1 if guess == correct else 0

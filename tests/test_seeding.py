"""Seeding as the book does it: ``np.random.seed(s)`` before building a model
fixes weights and dropout masks, so a CPU run repeats; ``common.backend.seed`` does
the same; the generators' state round-trips through a checkpoint at any point,
before the first mask included."""
import numpy as np

from common import backend
from common.optimizer import SGD
from common.trainer import RnnlmTrainer
from ch_gru.better_rnnlm import BetterRnnlm

CORPUS = np.random.default_rng(11).integers(0, 30, 401)


def book_run(seed_call, seed, iters=4):
    """The book's chapter-6 script in small: seed, build, train with dropout."""
    seed_call(seed)
    model = BetterRnnlm(vocab_size=30, wordvec_size=8, hidden_size=8, dropout_ratio=0.5)
    trainer = RnnlmTrainer(model, SGD(lr=1.0))
    xs, ts = CORPUS[:-1], CORPUS[1:]
    batch_size, time_size = 4, 5
    trainer.fit(xs[:iters * batch_size * time_size], ts[:iters * batch_size * time_size], max_epoch=1,
                batch_size=batch_size, time_size=time_size, eval_interval=0)
    return [p.copy() for p in model.params]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_numpy_seed_fixes_weights_and_dropout(capsys):
    first = book_run(np.random.seed, 5)
    again = book_run(np.random.seed, 5)
    assert same(first, again)
    other = book_run(np.random.seed, 6)
    assert not same(first, other)


def test_dropout_alone_follows_numpy_seed():
    np.random.seed(3)
    weights = np.random.randn(4)
    a = backend.uniform((3, 50), np.float32)
    np.random.seed(3)
    assert np.array_equal(np.random.randn(4), weights)
    b = backend.uniform((3, 50), np.float32)
    np.testing.assert_array_equal(a, b)
    np.random.seed(4)
    assert not np.array_equal(backend.uniform((3, 50), np.float32), a)


def test_common_np_seed_still_fixes_the_run(capsys):
    first = book_run(backend.seed, 7)
    np.random.seed(123)                   # whatever came before does not matter
    backend.uniform((2, 2), np.float64)
    assert same(first, book_run(backend.seed, 7))
    assert not same(first, book_run(backend.seed, 8))


def masks(n=3):
    return [backend.uniform((4, 6), np.float64) for _ in range(n)]


def assert_restored(state, expected):
    """After another run moved both generators, ``state`` brings back the
    ``expected`` masks."""
    np.random.seed(1)
    masks()
    backend.set_rng_state(state)
    for got, want in zip(masks(), expected):
        np.testing.assert_array_equal(got, want)


def test_rng_state_round_trips_before_the_first_mask():
    backend.seed(9)
    np.random.randn(5)                    # initial weights
    state = backend.get_rng_state()
    assert state['backend_current'] is False
    expected = masks()
    backend.set_rng_state(state)
    assert backend.get_rng_state() == state
    assert_restored(state, expected)


def test_rng_state_round_trips_after_masks_and_host_draws():
    backend.seed(9)
    masks()
    current = backend.get_rng_state()     # mid-run, dropout generator in use
    assert current['backend_current'] is True and current['backend'] is not None
    expected = masks()
    np.random.rand(2)                     # e.g. a new epoch's sentence order
    moved = backend.get_rng_state()
    assert moved['backend_current'] is False
    expected_after_move = masks()
    for state in (current, moved):
        backend.set_rng_state(state)
        assert backend.get_rng_state() == state
    assert_restored(current, expected)
    assert_restored(moved, expected_after_move)


def test_rng_state_of_an_older_checkpoint_restores_the_dropout_generator():
    backend.seed(2)
    masks()
    state = backend.get_rng_state()
    del state['backend_current']          # written before the flag existed
    assert_restored(state, masks())

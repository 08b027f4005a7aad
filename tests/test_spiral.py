"""dataset/spiral.py: the book's spiral points, bit for bit, and its seeding."""
import numpy as np

from dataset import spiral


def books_spiral(seed=1984):
    """The book's dataset/spiral.py load_data, loop by loop (its ``np.int`` spelled ``int``)."""
    np.random.seed(seed)
    N, DIM, CLS_NUM = 100, 2, 3
    x = np.zeros((N * CLS_NUM, DIM))
    t = np.zeros((N * CLS_NUM, CLS_NUM), dtype=int)
    for j in range(CLS_NUM):
        for i in range(N):
            rate = i / N
            radius = 1.0 * rate
            theta = j * 4.0 + 4.0 * rate + np.random.randn() * 0.2
            ix = N * j + i
            x[ix] = np.array([radius * np.sin(theta), radius * np.cos(theta)]).flatten()
            t[ix, j] = 1
    return x, t


def test_same_numbers_as_the_book_for_the_default_and_other_seeds():
    for seed in (1984, 0, 7):
        x, t = spiral.load_data(seed) if seed != 1984 else spiral.load_data()
        bx, bt = books_spiral(seed)
        assert x.shape == (300, 2) and x.dtype == np.float64
        assert t.shape == (300, 3) and t.dtype == bt.dtype
        np.testing.assert_array_equal(x, bx)
        np.testing.assert_array_equal(t, bt)


def test_one_hot_classes_in_order_and_points_on_the_arms():
    x, t = spiral.load_data()
    assert (t.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(t.argmax(axis=1), np.repeat([0, 1, 2], 100))
    radius = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(radius, np.tile(np.arange(100) / 100, 3), atol=1e-12)
    assert not np.array_equal(spiral.load_data(1)[0], x)


def test_the_global_generator_continues_as_after_the_books_call():
    spiral.load_data()
    after = np.random.randn(3)
    books_spiral()
    np.testing.assert_array_equal(after, np.random.randn(3))

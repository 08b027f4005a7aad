"""The book's spiral data set (chapter 1): three interleaved spiral arms in the plane.

``load_data(seed=1984)`` returns ``(x, t)``: ``x`` (300, 2) float64 points and
``t`` (300, 3) one-hot int labels, 100 points per class, in class order. Point
i of class j (rate r = i / 100) lies at radius r and angle
θ = 4j + 4r + 0.2 ε, ε ~ N(0, 1): x = (r sin θ, r cos θ).

As in the book, the function seeds NumPy's global generator with ``seed`` and
draws the 300 ε from it in the same order (class by class), so the points are
the book's to the last bit and whatever the caller draws next from
``numpy.random`` (the book's initial weights) is the book's too.
"""
import numpy

N = 100       # points per class
DIM = 2       # coordinates per point
CLS_NUM = 3   # classes


def load_data(seed=1984):
    """(x, t): the points (N * CLS_NUM, DIM) and their one-hot classes (N * CLS_NUM, CLS_NUM)."""
    numpy.random.seed(seed)
    noise = numpy.random.randn(CLS_NUM, N)              # row j: class j's draws, in the book's order
    rate = numpy.arange(N) / N                          # (N,)
    radius = 1.0 * rate
    theta = numpy.arange(CLS_NUM)[:, None] * 4.0 + 4.0 * rate + noise * 0.2      # (CLS_NUM, N)
    x = numpy.stack([radius * numpy.sin(theta), radius * numpy.cos(theta)], axis=-1).reshape(N * CLS_NUM, DIM)
    t = numpy.zeros((N * CLS_NUM, CLS_NUM), dtype=int)
    t[numpy.arange(N * CLS_NUM), numpy.repeat(numpy.arange(CLS_NUM), N)] = 1
    return x, t

"""common.functions against the book's formulas, and its star-import names."""
import numpy as np
import pytest

import common.functions
from common.functions import cross_entropy_error, relu, sigmoid, softmax


def test_relu_is_max_of_zero_and_x(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = relu(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0))
    np.testing.assert_array_equal(relu(np.array([-2, 0, 3])), [0, 0, 3])


def test_functions_agree_with_the_books_formulas_in_float32(rng):
    x = (rng.standard_normal((6, 7)) * 4).astype(np.float32)
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(sigmoid(x), 1 / (1 + np.exp(-x)), rtol=4 * eps, atol=eps)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax(x), e / e.sum(axis=1, keepdims=True), rtol=4 * eps, atol=eps)
    v = x[0]
    np.testing.assert_allclose(softmax(v), np.exp(v - v.max()) / np.exp(v - v.max()).sum(), rtol=4 * eps)
    y, t = softmax(x), rng.integers(0, 7, 6)
    assert float(cross_entropy_error(y, t)) == pytest.approx(-np.mean(np.log(y[np.arange(6), t] + 1e-7)), rel=1e-6)
    assert float(cross_entropy_error(y, np.eye(7)[t])) == pytest.approx(float(cross_entropy_error(y, t)))


def test_star_import_gives_what_the_books_module_gives():
    namespace = {}
    exec('from common.functions import *', namespace)
    for name in ('np', 'GPU', 'sigmoid', 'relu', 'softmax', 'cross_entropy_error'):
        assert name in namespace, name
    assert namespace['np'] is np and namespace['GPU'] is False
    assert set(namespace) - {'__builtins__'} == set(common.functions.__all__)

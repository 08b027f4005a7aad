"""common.util: eval_perplexity, clip_grads and the book's truncated-BPTT windows on hand-checkable
inputs."""
import math

import numpy as np
import pytest

from common.errors import DataError
from common.util import clip_grads, eval_perplexity, window_indices
from helpers.fakes import Recorder


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

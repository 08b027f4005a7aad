import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # the tests' own package: helpers

from helpers import IN_CI, SHARED_DATA  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope='session')
def shared_data():
    """The real corpora; skipped on a machine without them, a failure in CI."""
    if not os.path.isdir(os.path.join(SHARED_DATA, 'ptb')):
        (pytest.fail if IN_CI else pytest.skip)(f'real corpora not found at {SHARED_DATA}')
    return os.path.abspath(SHARED_DATA)

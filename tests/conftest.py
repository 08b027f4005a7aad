import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # tests/gradcheck.py, tests/reference.py, tests/fake_cupy

ROOT = os.path.dirname(HERE)
#: The real corpora (GUIDE section 2); CI sets DLFS_DATA_DIR to it as well.
SHARED_DATA = os.environ.get('DLFS_TEST_DATA', os.path.join(ROOT, '..', 'shared', 'data'))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


IN_CI = os.environ.get('CI', '').lower() == 'true'


@pytest.fixture(scope='session')
def shared_data():
    """The real corpora; skipped on a machine without them, a failure in CI."""
    if not os.path.isdir(os.path.join(SHARED_DATA, 'ptb')):
        (pytest.fail if IN_CI else pytest.skip)(f'real corpora not found at {SHARED_DATA}')
    return os.path.abspath(SHARED_DATA)

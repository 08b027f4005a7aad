"""What the tests share: paths, the CI switch, the one way to start a child process
(:mod:`helpers.processes`), the book-style models (:mod:`helpers.book_clients`, the
seq2seq ones of chapters 7-8 in :mod:`helpers.book_seq2seq`), the book's way of pickling
weights (:mod:`helpers.book_pickles`), the PNG checks (:mod:`helpers.images`) and
stand-in models with known losses (:mod:`helpers.fakes`).
Gradient checks and the step-by-step references live in :mod:`common.gradcheck`."""
import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
#: The stand-in CuPy that runs the GPU path on NumPy (first on a child's path with ``fake_cupy``).
FAKE_CUPY = os.path.join(TESTS, 'fake_cupy')
#: Programs that tests start as child processes.
PROGRAMS = os.path.join(TESTS, 'programs')
#: The real corpora (../shared/data beside the project); CI sets DLFS_DATA_DIR to it as well.
SHARED_DATA = os.environ.get('DLFS_TEST_DATA', os.path.join(ROOT, '..', 'shared', 'data'))
#: In CI every optional dependency is installed: a test that would skip fails instead.
IN_CI = os.environ.get('CI', '').lower() == 'true'


def script(name):
    """The path of ``scripts/<name>``."""
    return os.path.join(ROOT, 'scripts', name)


def program(name):
    """The path of ``tests/programs/<name>``."""
    return os.path.join(PROGRAMS, name)

"""``--processes K`` (common/parallel/launch.py): the ranks' threads, and the
relay that replaces MPICH's banner about a dead rank with one line. The runs
under mpiexec are in test_parallel.py."""
import io
import os
import threading

from common.parallel import launch
from common.parallel.communicator import share_cores

BANNER = """
===================================================================================
=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES
=   PID 2830 RUNNING AT vm
=   EXIT CODE: 9
=   CLEANING UP REMAINING PROCESSES
=   YOU CAN IGNORE THE BELOW CLEANUP MESSAGES
===================================================================================
YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)
This typically refers to a problem with your application.
Please see the FAQ page for debugging suggestions
"""
START = 'data-parallel: 2 processes over MPI (rank 0: pid 2829 on vm, 1: pid 2830 on vm)\n'


def relay(text, report=None, chunk=7):
    """``text`` through a Relay in chunks of ``chunk`` bytes: (what it wrote, the report)."""
    report = report or launch.Report()
    read, write = os.pipe()
    sink = io.StringIO()
    worker = threading.Thread(target=launch.Relay(os.fdopen(read, 'rb'), sink, report).run)
    worker.start()
    data = text.encode()
    for i in range(0, len(data), chunk):
        os.write(write, data[i:i + chunk])
    os.close(write)
    worker.join()
    return sink.getvalue(), report


def test_the_banner_is_held_back_and_names_the_rank_that_died(tmp_path):
    written, report = relay(START + '| epoch 1 | train ppl 12.00\n' + BANNER)
    assert written == START + '| epoch 1 | train ppl 12.00\n'
    checkpoint = tmp_path / 'checkpoint.npz'
    assert report.line(str(checkpoint)) == ('error: rank 1 (pid 2830) was killed (signal 9) and the job stopped: '
                                            'no checkpoint was written yet: start the run again')
    checkpoint.write_bytes(b'x')
    assert report.line(str(checkpoint)).endswith(f'resume from the last checkpoint with --resume {checkpoint}')


def test_other_output_passes_unchanged_blank_lines_and_progress_bars_included():
    text = 'a\n\nb\n\n\nc\r 10%|#   |\r 20%|##  |\rdone\n=== not a banner line\nend'
    written, report = relay(text, chunk=3)
    assert written == text
    assert report.line(None) is None                 # nothing died


def test_a_rank_that_explained_itself_gets_no_second_line():
    _, report = relay(START + 'error: rank 1: RuntimeError: failing on purpose\n' + BANNER)
    assert report.line(None) is None


def test_a_pid_that_is_not_a_rank_is_named_as_a_process():
    _, report = relay(BANNER)
    assert report.line(None).startswith('error: a process (pid 2830) was killed (signal 9) and the job stopped')


def test_each_rank_gets_its_share_of_the_cores_unless_the_user_chose(monkeypatch):
    monkeypatch.setattr(launch, 'cores', lambda: 8)
    env = launch.child_env(2, {'PATH': '/bin'})
    assert [env[k] for k in launch.THREAD_VARS] == ['4', '4', '4']
    assert launch.child_env(16, {})['OMP_NUM_THREADS'] == '1'
    assert launch.child_env(2, {'OMP_NUM_THREADS': '3'})['OMP_NUM_THREADS'] == '3'


def test_a_rank_started_by_mpiexec_limits_its_blas_threads(monkeypatch):
    import pytest
    threadpoolctl = pytest.importorskip('threadpoolctl')
    assert share_cores(2, {'OMP_NUM_THREADS': '3'}) == 3          # the user's choice, left alone
    assert share_cores(1, {}) is None
    before = threadpoolctl.threadpool_info()
    try:
        limit = share_cores(64, {})
        assert limit == 1
        assert all(pool['num_threads'] == 1 for pool in threadpoolctl.threadpool_info())
    finally:
        for pool in before:
            threadpoolctl.threadpool_limits(limits=pool['num_threads'], user_api=pool['user_api'])

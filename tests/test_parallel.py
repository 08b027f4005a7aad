"""Data-parallel training over MPI: equivalence with one process, checkpoints
across process counts, faults and bad input. The multi-process tests start
``mpiexec -n 2`` (mpi4py and the mpich wheel: ``pip install -e '.[mpi]'``);
they skip where those are missing and fail in CI, which installs them."""
import json
import os
import re
import shutil
import signal
import time

import numpy
import pytest

from helpers import IN_CI, ROOT, program, script
from helpers.processes import run_python, start_python

PROGRAM = program('data_parallel_program.py')
SCRIPT = script('train_better_rnnlm.py')


def _have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return shutil.which('mpiexec') is not None


needs_mpi = pytest.mark.skipif(not _have_mpi() and not IN_CI, reason='mpi4py or mpiexec not installed')


def launch(n, *args, timeout=120, extra_env=None, program=PROGRAM, fake_cupy=False):
    """Run ``program args`` alone (n = 0: no mpiexec) or as ``mpiexec -n n``, one BLAS thread a process."""
    return run_python(program, extra_env, *args, mpi=n, threads=1, timeout=timeout, fake_cupy=fake_cupy)


def result(out):
    with open(os.path.join(out, 'result.json')) as f:
        return json.load(f)


def params(out):
    with numpy.load(os.path.join(out, 'params.npz')) as z:
        return [z[k] for k in sorted(z.files, key=lambda k: int(k.split('_')[1]))]


def assert_close(a, b, rel=1e-5):
    for p, q in zip(params(a), params(b)):
        scale = numpy.abs(p).max()
        assert numpy.abs(p - q).max() <= rel * scale, numpy.abs(p - q).max() / scale


def ok(r):
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


# -- two processes compute what one does ------------------------------------------------


@pytest.fixture(scope='module')
def alone(tmp_path_factory):
    """One process, no MPI: 2 epochs (24 iterations), dropout 0.5."""
    out = str(tmp_path_factory.mktemp('alone'))
    ok(launch(0, out, '--epochs', 2))
    return out


@needs_mpi
def test_two_ranks_train_as_one_process_does_with_dropout(alone, tmp_path):
    out = str(tmp_path)
    r = ok(launch(2, out, '--epochs', 2))
    one, two = result(alone), result(out)
    assert two['size'] == 2
    assert two['spread'] == 0.0                    # the replicas are equal, bit for bit
    assert_close(alone, out, rel=1e-5)             # and equal to the single process's parameters
    assert two['valid'] == pytest.approx(one['valid'], rel=1e-5)
    assert r.stdout.count('| end |') == 1          # only rank 0 prints


@needs_mpi
def test_evaluation_over_two_ranks_equals_one_process(alone, tmp_path):
    out = str(tmp_path)
    ok(launch(2, out, '--epochs', 1, '--dropout', 0))
    assert result(out)['first_ppl'] == pytest.approx(result(alone)['first_ppl'], rel=1e-6)


@needs_mpi
@pytest.mark.parametrize('before, after', [(2, 0), (0, 2)])
def test_checkpoint_resumes_with_another_number_of_processes(alone, tmp_path, before, after):
    out = str(tmp_path)
    r = ok(launch(before, out, '--epochs', 2, '--interrupt-at', 17))     # 5 iterations into epoch 2
    assert result(out)['interrupted']
    with numpy.load(os.path.join(out, 'checkpoint.npz')) as z:
        assert z['hidden_0_h'].shape == (4, 8) and z['hidden_1_h'].shape == (4, 8)   # every rank's rows
    ok(launch(after, out, '--epochs', 2, '--resume'))
    assert_close(alone, out, rel=1e-5)
    assert r.stdout.count('stopped by Ctrl-C') == 1


# -- faults ---------------------------------------------------------------------------------


@needs_mpi
@pytest.mark.parametrize('kind, line', [([], 'error: rank 1: RuntimeError: failing on purpose'),
                                        (['--user-error'], 'error: rank 1: failing on purpose')])
def test_a_rank_that_raises_ends_the_job_with_one_line(tmp_path, kind, line):
    start = time.monotonic()
    r = launch(2, str(tmp_path), '--epochs', 50, '--raise-on-rank', 1, *kind, timeout=60)
    assert time.monotonic() - start < 30          # bad input met by one rank alone: after a 5 s wait
    assert r.returncode != 0
    assert line in r.stderr.splitlines(), r.stderr
    assert 'Traceback' not in r.stderr


def signal_rank_1(cmd, out, sig, mpi=2, **extra_env):
    """Start ``mpiexec -n 2 cmd`` (``mpi=0``: ``cmd`` alone, which starts its
    ranks itself); once its first checkpoint is written send ``sig`` to rank 1.
    Returns (seconds until the job ended, its status, stdout, stderr, rank 1's PID)."""
    job = start_python(cmd[0], extra_env, *cmd[1:], mpi=mpi, threads=1)
    try:
        ranks = wait_for_ranks(job, 2)
        wait_for(lambda: os.path.exists(os.path.join(out, 'checkpoint.npz')), job)
        time.sleep(0.2)                                     # into the next epoch
        os.kill(ranks[1], sig)
        sent = time.monotonic()
        out_text, err = job.communicate(timeout=60)
        return time.monotonic() - sent, job.returncode, out_text, err, ranks[1]
    finally:
        job.kill()


@needs_mpi
def test_a_hanging_rank_ends_the_job_after_the_timeout(tmp_path):
    out = str(tmp_path)
    seconds, status, text, err, _ = signal_rank_1([PROGRAM, out, '--epochs', '200', '--sleep', '0.02'], out,
                                                  signal.SIGSTOP, DLFS_MPI_TIMEOUT='2')   # rank 1 stops answering
    assert seconds < 20 and status != 0
    assert re.search(r'^error: rank 0: no answer from the other ranks for 2 s in ', text + err, re.M), text + err


@needs_mpi
def test_a_killed_rank_is_one_line_with_the_resume_command_and_the_checkpoint_resumes(tmp_path, shared_data):
    out = str(tmp_path)
    checkpoint = os.path.join(out, 'checkpoint.npz')
    cmd = [SCRIPT, *tiny_script_args(shared_data, out), '--max-epoch', '100', '--processes', '2']
    seconds, status, text, err, pid = signal_rank_1(cmd, out, signal.SIGKILL, mpi=0)
    assert seconds < 10 and status != 0
    assert err.splitlines() == [f'error: rank 1 (pid {pid}) was killed (signal 9) and the job stopped: resume '
                                f'from the last checkpoint with --resume {checkpoint}'], err
    assert 'BAD TERMINATION' not in text + err and '=====' not in text
    from common.run.checkpoint import load_checkpoint
    done = load_checkpoint(checkpoint).state.epoch                      # the checkpoint is whole
    assert done >= 1
    r = ok(launch(0, '--resume', checkpoint, '--max-epoch', done + 1, '--processes', '2', program=SCRIPT))
    assert 'data-parallel: 2 processes' in r.stdout
    assert f'resumed from {checkpoint}: {done} epochs done' in r.stdout
    assert f'| epoch {done + 1} |' in r.stdout and '| end |' in r.stdout


def tiny_script_args(data, out):
    ptb = os.path.join(data, 'ptb')
    return ['--train-file', os.path.join(ptb, 'ptb.valid.txt'), '--valid-file', os.path.join(ptb, 'ptb.test.txt'),
            '--test-file', os.path.join(ptb, 'ptb.test.txt'), '--max-train-tokens', '2000', '--max-eval-tokens',
            '400', '--wordvec-size', '8', '--hidden-size', '8', '--batch-size', '4', '--time-size', '5',
            '--eval-batch-size', '2', '--eval-interval', '0', '--seed', '1', '--out-dir', out]


def wait_for_ranks(job, n, timeout=60):
    """The PIDs of the ranks, from rank 0's 'data-parallel:' line (or the program's start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = job.stdout.readline()
        if not line and job.poll() is not None:
            raise AssertionError(f'the job ended early: {job.stderr.read()[-2000:]}')
        found = re.findall(r'(\d+): pid (\d+)', line)
        if len(found) == n:
            return [int(pid) for _, pid in found]
    raise AssertionError('no data-parallel line')


def wait_for(condition, job, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert job.poll() is None, job.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)


CHAR_SCRIPT = script('train_char_rnnlm.py')


def char_args(tmp_path):
    text = tmp_path / 'tiny.txt'
    text.write_text(''.join(f'line {i}: the quick brown fox jumps over the lazy dog\n' for i in range(200)))
    return ['--corpus', str(text), '--embed-size', '8', '--hidden-size', '8', '--batch-size', '4', '--time-size',
            '8', '--eval-batch-size', '2', '--max-epoch', '1', '--eval-interval', '0', '--sample', '20',
            '--dropout', '0.2', '--seed', '1', '--out-dir', str(tmp_path / 'out')]


@needs_mpi
def test_the_char_script_runs_on_two_processes_and_rank_0_alone_writes(tmp_path):
    r = ok(launch(2, *char_args(tmp_path), program=CHAR_SCRIPT))
    assert r.stdout.count('| end |') == 1 and r.stdout.count('-- sample') == 1
    assert 'data-parallel: 2 processes over MPI' in r.stdout
    with open(tmp_path / 'out' / 'log.jsonl') as f:
        assert [json.loads(line)['event'] for line in f] == ['start', 'epoch', 'end']     # written once


# -- the scripts: two processes compute what one computes ---------------------------------
# float64, because float32 rounding differs with the order of the sums (rows split over ranks, BLAS
# threads) and training amplifies it: docs/distributed.md, "Equal up to rounding".


def word_case(data, *flags):
    return SCRIPT, lambda out: [*tiny_script_args(data, out), '--dropout', '0.3', '--max-epoch', '2', *flags]


def char_case(tmp_path, data, *flags):
    text = tmp_path / 'shakespeare.txt'
    with open(os.path.join(data, 'shakespeare', 'input.txt'), encoding='utf-8') as f:
        text.write_text(f.read(6000), encoding='utf-8')
    return CHAR_SCRIPT, lambda out: ['--corpus', str(text), '--embed-size', '8', '--hidden-size', '8',
                                     '--batch-size', '4', '--time-size', '8', '--eval-batch-size', '2',
                                     '--max-epoch', '2', '--eval-interval', '0', '--sample', '0', '--dropout', '0.2',
                                     '--seed', '1', '--out-dir', out, *flags]


SCRIPT_CASES = {
    'word book recipe, dropout, token limits': lambda tmp, data: word_case(data),
    'word regularised recipe': lambda tmp, data: word_case(data, '--recipe', 'regularised', '--asgd-latest', '0.5'),
    'char continuous': lambda tmp, data: char_case(tmp, data),
    'char --sentences, uneven blocks': lambda tmp, data: char_case(tmp, data, '--sentences', '--batch-size', '5'),
}


def run_log(out):
    with open(os.path.join(out, 'log.jsonl')) as f:
        return [json.loads(line) for line in f]


def curve(out):
    """The floats of every epoch record of a run's log.jsonl and of its last end record
    (a run resumed from a finished one has two)."""
    log = run_log(out)
    ends = [e for e in log if e['event'] == 'end'][-1:]
    keys = ('train_ppl', 'valid_ppl', 'lr', 'best_valid_ppl', 'test_ppl')
    return [[e[k] for k in keys if k in e] for e in [e for e in log if e['event'] == 'epoch'] + ends]


def end_line(text):
    return next(line for line in text.splitlines() if line.startswith('| end |'))


def model_arrays(out):
    name = next(n for n in os.listdir(out) if n.endswith('.npz') and n != 'checkpoint.npz')
    with numpy.load(os.path.join(out, name)) as z:
        return {k: z[k] for k in z.files if z[k].dtype.kind == 'f'}


def assert_same_run(a, b, rel=1e-5):
    """Two runs' end lines are equal, their curves and model files equal to ``rel``."""
    numpy.testing.assert_allclose(sum(curve(a), []), sum(curve(b), []), rtol=rel)
    x, y = model_arrays(a), model_arrays(b)
    assert sorted(x) == sorted(y) and x
    for k in x:
        assert numpy.abs(x[k] - y[k]).max() <= rel * numpy.abs(x[k]).max(), k


@needs_mpi
@pytest.mark.parametrize('case', sorted(SCRIPT_CASES))
def test_a_script_on_two_processes_computes_what_one_process_computes(tmp_path, shared_data, case):
    program, flags = SCRIPT_CASES[case](tmp_path, shared_data)
    runs = {n: ok(launch(n, *flags(str(tmp_path / str(n))), '--dtype', 'float64', program=program)) for n in (0, 2)}
    assert 'data-parallel: 2 processes' in runs[2].stdout
    assert end_line(runs[0].stdout) == end_line(runs[2].stdout)
    assert_same_run(str(tmp_path / '0'), str(tmp_path / '2'))


@needs_mpi
def test_a_script_resumed_on_another_number_of_processes_computes_the_straight_run(tmp_path, shared_data):
    """Epoch 1 on two processes, epoch 2 resumed in one (and the other way round), against two epochs in one."""
    program, flags = word_case(shared_data, '--dtype', 'float64')
    straight = str(tmp_path / 'straight')
    ok(launch(0, *flags(straight), program=program))
    for first, second in ((2, 0), (0, 2)):
        out = str(tmp_path / f'{first}-{second}')
        ok(launch(first, *flags(out), '--max-epoch', '1', program=program))
        r = ok(launch(second, '--resume', os.path.join(out, 'checkpoint.npz'), '--max-epoch', '2', program=program))
        assert 'resumed from' in r.stdout and '| epoch 2 |' in r.stdout
        assert_same_run(straight, out)


@needs_mpi
def test_float32_runs_differ_only_by_rounding_at_first(tmp_path, shared_data):
    """In float32 the first epoch's numbers agree to float32 rounding; the
    reason the runs above are float64 is what training does with it later."""
    program, flags = word_case(shared_data)
    for n in (0, 2):
        ok(launch(n, *flags(str(tmp_path / str(n))), '--max-epoch', '1', program=program))
    numpy.testing.assert_allclose(curve(str(tmp_path / '0'))[0], curve(str(tmp_path / '2'))[0], rtol=1e-4)


# -- bad input --------------------------------------------------------------------------


@needs_mpi
@pytest.mark.parametrize('flag, value', [('--batch-size', '3'), ('--eval-batch-size', '3')])
def test_a_batch_the_ranks_cannot_share_is_one_line(tmp_path, shared_data, flag, value):
    args = tiny_script_args(shared_data, str(tmp_path))
    args[args.index(flag) + 1] = value
    r = launch(2, *args, program=SCRIPT, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == (f'error: {flag} 3 is not divisible by the 2 processes (each takes an equal '
                                f'block of rows): use a multiple of 2')
    assert not os.path.exists(os.path.join(str(tmp_path), 'log.jsonl'))


SHARE_CORES = """
import os
for name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.pop(name, None)                 # as a user's shell has them: unset
from common.parallel.communicator import cores, world
comm = world()                                 # before NumPy is loaded, as in the scripts
import numpy, threadpoolctl
print(comm.rank, comm.threads, sorted({p['num_threads'] for p in threadpoolctl.threadpool_info()}), cores())
"""


@needs_mpi
def test_ranks_under_a_bare_mpiexec_share_the_cores_blas_threads():
    pytest.importorskip('threadpoolctl')
    r = ok(run_python(SHARE_CORES, None, mpi=2))
    lines = sorted(r.stdout.split('\n')[:-1])
    cores = int(lines[0].split()[-1])
    expect = max(1, cores // 2)
    assert lines == [f'{rank} {expect} [{expect}] {cores}' for rank in (0, 1)], r.stdout


@needs_mpi
def test_processes_other_than_mpiexecs_is_one_line(tmp_path, shared_data):
    r = launch(2, *tiny_script_args(shared_data, str(tmp_path)), '--processes', '3', program=SCRIPT, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == 'error: --processes 3 but mpiexec started 2 processes: give one of the two'


def test_processes_without_mpiexec_is_one_line(tmp_path, shared_data):
    bare = tmp_path / 'bin'
    bare.mkdir()
    r = launch(0, *tiny_script_args(shared_data, str(tmp_path)), '--processes', '2', program=SCRIPT,
               extra_env={'PATH': str(bare)})
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: --processes 2 starts the ranks with mpiexec, which is not installed: "
                                "pip install mpi4py mpich (or pip install -e '.[mpi]')")


@needs_mpi
def test_more_ranks_on_a_node_than_gpus_is_one_line(tmp_path, shared_data):
    r = launch(2, *tiny_script_args(shared_data, str(tmp_path)), '--gpu', program=SCRIPT, timeout=60,
               fake_cupy=True)       # the stand-in CuPy: 1 GPU
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(r'error: 2 processes on \S+ but 1 GPU: start at most 1 per node '
                                            r'\(one GPU each\), or set DLFS_SHARE_GPU=1 to test on shared GPUs '
                                            r'\(slow: no NCCL\)', lines[0]), r.stderr


@needs_mpi
def test_two_ranks_sharing_one_gpu_compute_what_one_process_computes_on_it(tmp_path, shared_data):
    """The test mode DLFS_SHARE_GPU=1 on the stand-in CuPy's one GPU: the gradients and the first
    parameters go through host buffers over MPI; the run equals the one-process GPU run."""
    program, flags = word_case(shared_data, '--gpu', '--dtype', 'float64', '--max-epoch', '1')
    for n in (0, 2):
        r = ok(launch(n, *flags(str(tmp_path / str(n))), program=program, fake_cupy=True,
                      extra_env={'DLFS_SHARE_GPU': '1'}))
        assert 'backend CuPy (GPU)' in r.stdout
    assert_same_run(str(tmp_path / '0'), str(tmp_path / '2'))


def test_mpiexec_without_a_working_mpi4py_is_one_line(tmp_path, shared_data):
    broken = tmp_path / 'broken'
    (broken / 'mpi4py').mkdir(parents=True)
    (broken / 'mpi4py' / '__init__.py').write_text("raise ImportError('libmpi.so.12: cannot open shared object')\n")
    args = tiny_script_args(shared_data, str(tmp_path / 'out'))
    for rank in ('0', '1'):       # as mpiexec starts them: only rank 0 says it
        r = launch(0, *args, program=SCRIPT, timeout=60,
                   extra_env=dict(PMI_SIZE='2', PMI_RANK=rank, PYTHONPATH=f'{broken}{os.pathsep}{ROOT}'))
        assert r.returncode == 2
        expected = ("error: started by an MPI launcher with 2 processes but mpi4py cannot be loaded (ImportError: "
                    "libmpi.so.12: cannot open shared object): pip install mpi4py mpich (or pip install -e '.[mpi]')")
        assert r.stderr.strip() == (expected if rank == '0' else '')


@needs_mpi
def test_the_benchmark_runs_one_and_two_processes(tmp_path):
    out = tmp_path / 'bench.json'
    ok(launch(0, '--tiny', '--iters', '2', '--json', out, program=script('bench_mpi.py')))
    result = json.loads(out.read_text())
    assert result['one_process_2_threads']['processes'] == 1 and result['two_processes_1_thread']['processes'] == 2
    assert result['two_processes_2_threads']['processes'] == 2 and result['model'] == 'tiny'
    two = result['two_processes_1_thread']
    assert two['bytes'] == 4 * two['params'] and two['grad_step_s'] > 0 and two['allreduce_alone_s'] > 0


# -- the pieces, in one process ----------------------------------------------------------


def test_one_process_without_mpi_uses_the_single_process_communicator(monkeypatch):
    from common.parallel import communicator
    from common.errors import ConfigError
    assert communicator.launched_size({}) == 1
    assert communicator.launched_size({'PMI_SIZE': '4'}) == 4
    assert communicator.launched_size({'OMPI_COMM_WORLD_SIZE': '3'}) == 3
    assert communicator.launched_size({'MPI_LOCALNRANKS': '2'}) == 1          # a node's count, not the job's
    assert communicator.launched_rank({'OMPI_COMM_WORLD_RANK': '2'}) == 2
    monkeypatch.setenv('DLFS_MPI_TIMEOUT', 'soon')
    with pytest.raises(ConfigError, match="DLFS_MPI_TIMEOUT='soon' is not a positive number"):
        communicator.mpi_timeout()
    monkeypatch.setattr(communicator, '_world', None)
    world = communicator.world()
    assert isinstance(world, communicator.SingleProcess) and world.is_root
    assert world.rows(20) == slice(0, 20)
    flat = numpy.arange(4.0)
    assert world.allreduce_mean_(flat) is flat and flat.tolist() == [0, 1, 2, 3]


class RankOne:
    """A communicator as rank 1 of 2 sees it: ``bcast`` gives rank 0's value, ``root_stop``."""
    rank, size, is_root = 1, 2, False

    def __init__(self, root_stop=None):
        self.root_stop = root_stop

    def bcast(self, value):
        return self.root_stop


def test_follow_root_stops_a_rank_through_trainer_stop_as_rank_0_stops():
    from common.optimizer import SGD
    from common.parallel.steps import FollowRoot
    from common.run.parts import Stop
    from common.trainer import RnnlmTrainer
    trainer = RnnlmTrainer(None, SGD(0.1))
    trainer.first, trainer.done = 0, 3
    FollowRoot(RankOne()).iteration(trainer)
    assert trainer.stopped is None                       # rank 0 goes on: so does this rank
    FollowRoot(RankOne(Stop('time', 3))).iteration(trainer)
    assert trainer.stopped == ('time', 3)
    FollowRoot(RankOne(Stop('diverged', 3))).iteration(trainer)
    assert trainer.stopped == ('diverged', 3)            # through stop(): its rule holds


def test_only_rank_0_has_a_clock_and_a_ctrl_c_that_stop_the_run(tmp_path):
    from ch_gru.rnnlm import Rnnlm
    from common.optimizer import SGD
    from common.parallel.steps import FollowRoot
    from common.run.checkpoint import Record
    from common.run.loop import Corpora, EpochLoop
    from common.run.parts import CtrlC, TimeBudget
    from common.run.settings import TrainSettings
    from common.trainer import RnnlmTrainer
    model = Rnnlm(10, 4, 4, num_layers=1)
    s = TrainSettings(max_seconds=5.0, out_dir=str(tmp_path))
    trainer = RnnlmTrainer(model, SGD(0.1))
    loop = EpochLoop(model, trainer.optimizer, Corpora(None, None, None), s, trainer, None,
                     Record(None, None, None, None), RankOne())
    kinds = [type(p) for p in trainer.parts]
    assert TimeBudget not in kinds and CtrlC not in kinds and kinds[-1] is FollowRoot
    assert isinstance(loop.ctrl_c, CtrlC)                # its handler is still installed while training


def test_grad_bucket_packs_and_unpacks_every_gradient(rng):
    from common.parallel.steps import GradBucket
    grads = [rng.standard_normal(s).astype(numpy.float32) for s in ((3, 4), (5,), (2, 2, 2))]
    want = [g.copy() for g in grads]
    bucket = GradBucket(grads)
    flat = bucket.pack(grads)
    assert flat.shape == (12 + 5 + 8,) and flat.dtype == numpy.float32
    flat *= 2
    bucket.unpack(grads)
    for g, w in zip(grads, want):
        assert numpy.array_equal(g, 2 * w)


def test_row_blocks_draw_the_masks_of_the_whole_batch():
    from common import backend
    from common.layers import dropout_mask
    backend.seed(5)
    whole = dropout_mask((4, 3, 2), 0.5, numpy.float32)
    blocks = []
    for rows in (slice(0, 2), slice(2, 4)):
        backend.seed(5)
        backend.share_rows(rows, 4)
        try:
            blocks.append(dropout_mask((2, 3, 2), 0.5, numpy.float32))
            with pytest.raises(ValueError):
                dropout_mask((3, 3, 2), 0.5, numpy.float32)
        finally:
            backend.share_rows(None, None)
    assert numpy.array_equal(numpy.concatenate(blocks), whole)


NCCL_PROGRAM = r'''
import sys, types, json
import numpy
from common import config
config.GPU = True
from common.np import np                       # the stand-in CuPy
from common.parallel import communicator
from common.parallel.steps import AllReduceGrads

calls = []
nccl = types.SimpleNamespace(NCCL_FLOAT32='f32', NCCL_FLOAT64='f64', NCCL_FLOAT16='f16', NCCL_SUM='sum')
class Comm:
    def allReduce(self, send, recv, count, dtype, op, stream):
        calls.append(['allReduce', count, dtype, op, stream])
        flats[0] *= 2                          # what a second rank with the same gradients adds
    def bcast(self, ptr, count, dtype, root, stream):
        calls.append(['bcast', count, dtype, root, stream])
gpus = communicator.NcclCollectives(nccl, Comm(), 2)
gpus.pointer = lambda a: 1234
gpus.stream = lambda: 7
flats = []
class Ranks(communicator.SingleProcess):
    size = 2
    def allreduce_mean_(self, flat):
        flats[:] = [flat]
        return gpus.allreduce_mean_(flat)
model = types.SimpleNamespace(grads=[np.ones((3, 4), dtype='float32'), np.full((5,), 3.0, dtype='float32')])
AllReduceGrads(Ranks())(types.SimpleNamespace(model=model))
gpus.bcast_arrays(model.grads)
print(json.dumps({'calls': calls, 'grads': [g.get().tolist() for g in model.grads],
                  'device': type(model.grads[0]).__module__}))
'''


def test_nccl_path_reduces_one_flat_device_buffer_on_the_current_stream():
    r = run_python(NCCL_PROGRAM, {}, fake_cupy=True, threads=1, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['device'].startswith('cupy')
    assert out['calls'] == [['allReduce', 17, 'f32', 'sum', 7], ['bcast', 12, 'f32', 0, 7], ['bcast', 5, 'f32', 0, 7]]
    assert out['grads'] == [[[1.0] * 4] * 3, [3.0] * 5]          # summed over 2 ranks, divided by 2


@needs_mpi
def test_the_regularised_recipe_on_two_ranks_is_the_one_process_run(tmp_path, shared_data):
    """Embedding dropout and weight drop (masks over words and weights, alike on every rank), locked
    dropout (rows of the global batch), variable BPTT windows (each rank its rows) and NT-ASGD started
    by --asgd-latest (rank 0's clock decides): two ranks validate as one process does, epoch by epoch."""
    import json
    flags = ['--recipe', 'regularised', '--asgd-nonmono', '50', '--asgd-latest', '0.5', '--max-epoch', '4']
    curves = []
    for n, out in ((2, tmp_path / 'two'), (0, tmp_path / 'one')):
        r = ok(launch(n, *tiny_script_args(shared_data, str(out)), *flags, program=SCRIPT))
        assert '| epoch 2 | 50% of the training budget spent: averaging the weights' in r.stdout
        log = [json.loads(line) for line in open(out / 'log.jsonl')]
        assert [(e['event'], e['epoch']) for e in log if e['event'].startswith('asgd')] == [('asgd_start', 2)]
        curves.append([e['valid_ppl'] for e in log if e['event'] == 'epoch'])
    assert len(curves[0]) == 4
    numpy.testing.assert_allclose(curves[0], curves[1], rtol=1e-4)

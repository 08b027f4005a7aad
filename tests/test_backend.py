"""common.backend: the switch between NumPy and CuPy, the GPU code path exercised without a GPU
(the stand-in CuPy), and the generators behind dropout, seeded as the book seeds a run."""
import json
import os

import numpy as np
import pytest

from ch_gru.better_rnnlm import BetterRnnlm
from common import backend
from common.optimizer import SGD
from common.trainer import RnnlmTrainer
from helpers import ROOT, program
from helpers.processes import run_python


def test_gpu_off_gives_numpy():
    import numpy
    from common.np import np
    from common import config
    assert not config.GPU
    assert np is numpy


def test_gpu_on_without_cupy_is_a_clear_error(tmp_path):
    # An empty directory first on the path hides nothing; make sure 'cupy' cannot import.
    blocker = tmp_path / 'cupy.py'
    blocker.write_text("raise ImportError('No module named cupy')\n")
    r = run_python('import common.np', {'DLFS_GPU': '1', 'PYTHONPATH': str(tmp_path) + os.pathsep + ROOT})
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert 'BackendError' in last and 'CuPy' in last and 'pip install' in last


def test_gpu_flag_without_cupy_in_script_is_one_line(tmp_path):
    (tmp_path / 'cupy.py').write_text("raise ImportError('No module named cupy')\n")
    r = run_python(os.path.join(ROOT, 'scripts', 'train_better_rnnlm.py'), {'PYTHONPATH': str(tmp_path) + os.pathsep + ROOT},
                   '--gpu', '--out-dir', str(tmp_path / 'out'))
    assert r.returncode == 2
    assert r.stderr.count('\n') == 1 and r.stderr.startswith('error: GPU requested')
    assert 'Traceback' not in r.stderr


def test_late_switch_is_refused():
    r = run_python('import common.np; from common import config; config.GPU = True; '
                   'from common.run.cli import select_backend; select_backend(True)', {})
    assert r.returncode != 0 and 'after the backend' in r.stderr


def test_fake_cupy_refuses_host_mixing():
    code = ('import numpy; from common.np import np\n'
            'x = np.ones(3)\n'
            'for bad in (lambda: x + numpy.ones(3), lambda: x[numpy.array([0])], lambda: numpy.asarray(x)):\n'
            '    try:\n        bad()\n    except TypeError:\n        continue\n'
            '    raise SystemExit("mixing was allowed")\n'
            'print(type(x).__module__)')
    r = run_python(code, {'DLFS_GPU': '1'}, fake_cupy=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'cupy'


def test_training_on_the_gpu_path_matches_numpy(tmp_path):
    """Training, clipping, evaluation, save/load and prediction through the
    stand-in CuPy: no host/device mixing anywhere, and the same numbers as
    the NumPy backend up to float32 rounding (the fused GRU kernels compute
    σ as 1 / (1 + e^-x), the NumPy steps as (1 + tanh(x/2)) / 2)."""
    path = program('backend_program.py')
    cpu = run_python(path, {}, str(tmp_path))
    gpu = run_python(path, {'DLFS_GPU': '1'}, str(tmp_path), fake_cupy=True)
    assert cpu.returncode == 0, cpu.stderr
    assert gpu.returncode == 0, gpu.stderr
    a, b = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (cpu, gpu))
    assert (a.pop('backend'), b.pop('backend')) == ('numpy', 'cupy')
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-3), key


def test_script_end_to_end_on_the_gpu_path(tmp_path, shared_data):
    ptb = os.path.join(shared_data, 'ptb')
    r = run_python(os.path.join(ROOT, 'scripts', 'train_better_rnnlm.py'), {'DLFS_GPU': '1'},
                   '--gpu', '--train-file', os.path.join(ptb, 'ptb.valid.txt'),
                   '--valid-file', os.path.join(ptb, 'ptb.test.txt'), '--test-file', os.path.join(ptb, 'ptb.test.txt'),
                   '--max-train-tokens', '3000', '--max-eval-tokens', '1500', '--wordvec-size', '16',
                   '--hidden-size', '16', '--batch-size', '5', '--time-size', '10', '--max-epoch', '1',
                   '--out-dir', str(tmp_path), '--seed', '0', fake_cupy=True)
    assert r.returncode == 0, r.stderr
    assert 'CuPy (GPU)' in r.stdout and '| end |' in r.stdout


def test_fused_gru_kernels_match_the_numpy_steps():
    """The CUDA kernel bodies of common/kernels.py, evaluated by the stand-in
    CuPy, against the NumPy steps used on the CPU: the GRU layer's forward and
    backward through both must agree."""
    code = r'''
import json, numpy
from common import kernels
from common.np import np
from common.time_layers import TimeGRU
assert kernels.FUSED
rng = numpy.random.default_rng(0)
Wx, Wh, b = (rng.standard_normal(s) * 0.5 for s in ((3, 12), (4, 12), (12,)))
xs, dhs = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 4))
layer = TimeGRU(np.asarray(Wx), np.asarray(Wh), np.asarray(b))
hs = layer.forward(np.asarray(xs))
dxs = layer.backward(np.asarray(dhs))
print(json.dumps([np.asnumpy(a).tolist() for a in [hs, dxs, *layer.grads]]))
'''
    gpu = run_python(code, {'DLFS_GPU': '1'}, fake_cupy=True)
    assert gpu.returncode == 0, gpu.stderr
    import numpy as np
    from common.time_layers import TimeGRU
    rng = np.random.default_rng(0)
    Wx, Wh, b = (rng.standard_normal(s) * 0.5 for s in ((3, 12), (4, 12), (12,)))
    xs, dhs = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 4))
    layer = TimeGRU(Wx, Wh, b)
    expected = [layer.forward(xs), layer.backward(dhs), *layer.grads]
    for got, want in zip(json.loads(gpu.stdout), expected):
        np.testing.assert_allclose(np.array(got), want, rtol=1e-12, atol=1e-14)


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

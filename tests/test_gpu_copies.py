"""The GPU path makes none of the hidden copies CuPy makes for strided or
overlapping operands inside the time loops, and keeps working buffers out of
checkpoints. Run on the stand-in CuPy, which counts those copies the way
CuPy 14 makes them (tests/fake_cupy/cupy/__init__.py)."""
import json
import os

from helpers.processes import run_python

PROGRAM = r'''
import json, sys
import numpy
import cupy
from common import backend
from common.time_layers import TimeAffine, TimeGRU, TimeLSTM
from common.optimizer import SGD
from common.run.checkpoint import optimizer_state

rng = numpy.random.default_rng(0)
def dev(*shape, dtype='float32'):
    return backend.asarray(rng.standard_normal(shape).astype(dtype))

def copies(fn):
    cupy.copies.clear()
    fn()
    return [reason for reason, _ in cupy.copies]

out = {}
N, D, H = 3, 4, 5
for cell, Layer, gates, options in (('gru', TimeGRU, 3, {}), ('lstm', TimeLSTM, 4, {}),
                                    ('gru_after', TimeGRU, 3, dict(reset_after=True, bh=dev(3 * H)))):
    for T in (2, 7):
        layer = Layer(dev(D, gates * H), dev(H, gates * H), dev(gates * H), stateful=True, **options)
        xs = dev(N, T, D)
        layer.forward(xs)                      # a carried state for the next call
        def step():
            layer.forward(xs)
            layer.backward(dev(N, T, H))
        out[f'{cell}_T{T}'] = copies(step)

# tied output weight: its gradient is a transposed view of the embedding's
E, dE = dev(7, D), dev(7, D)
affine = TimeAffine(E.T, dev(7))
affine.grads[0] = dE.T
x = dev(N, 3, D)
affine.forward(x)
out['tied_affine'] = copies(lambda: affine.backward(dev(N, 3, 7)))

# a float64 layer fed a float32 carried state and float32 inputs
for name, options in (('mixed_dtype', {}), ('mixed_dtype_after', dict(reset_after=True))):
    gru = TimeGRU(dev(D, 3 * H, dtype='float64'), dev(H, 3 * H, dtype='float64'), dev(3 * H, dtype='float64'),
                  stateful=True, **options)
    gru.set_state(dev(N, H))
    out[name] = str(gru.forward(dev(N, 2, D)).dtype)

sgd = SGD(0.1)
p = [dev(50, 3)]
sgd.update(p, [dev(50, 3)])
out['sgd_state'] = optimizer_state(sgd, backend.asnumpy)
print(json.dumps(out))
'''


def run_fake(code, **env):
    r = run_python(code, {'DLFS_GPU': '1', **env}, fake_cupy=True)
    assert r.returncode == 0, r.stderr
    return r


def test_gpu_path_copies_nothing_per_step():
    out = json.loads(run_fake(PROGRAM).stdout.strip().splitlines()[-1])
    for cell in ('gru', 'lstm', 'gru_after'):
        short, long = out[f'{cell}_T2'], out[f'{cell}_T7']
        # nothing overlapping: CuPy would copy the input of every such launch
        assert not [r for r in long if 'overlaps' in r], long
    # TimeGRU, both forms: whatever is left is per call (the dWh halves), not per time step
    for cell in ('gru', 'gru_after'):
        assert len(out[f'{cell}_T7']) == len(out[f'{cell}_T2']) <= 4, out[f'{cell}_T7']
    assert out['tied_affine'] == [], out['tied_affine']


def test_float64_layer_takes_float32_state_and_inputs():
    out = json.loads(run_fake(PROGRAM).stdout.strip().splitlines()[-1])
    assert out['mixed_dtype'] == out['mixed_dtype_after'] == 'float64'


def test_sgd_scratch_buffer_is_not_saved():
    out = json.loads(run_fake(PROGRAM).stdout.strip().splitlines()[-1])
    assert out['sgd_state']['slots'] == {}, out['sgd_state']


def test_stand_in_refuses_mixed_dtypes_in_a_fused_kernel():
    code = ('from common.np import np\n'
            "k = np.ElementwiseKernel('T x', 'T y', 'y = x + 1', 'k')\n"
            "k(np.ones(3, dtype='float64'), np.ones(3, dtype='float32'))\n")
    r = run_python(code, {'DLFS_GPU': '1'}, fake_cupy=True)
    assert r.returncode != 0 and 'Type is mismatched' in r.stderr


def test_stand_in_counts_the_copies_cupy_makes():
    code = ('import cupy; from common.np import np\n'
            'a = np.ones((4, 6)); w = np.ones((6, 6))\n'
            'np.matmul(a, w[:, :3])\n'                    # strided operand: copied
            'np.multiply(a[:, :3], 2, out=a[:, 3:])\n'    # interleaved bounds: input copied
            'np.matmul(a, w, out=np.ones((6, 4)).T)\n'    # F-ordered out: temporary + copy
            'x = a[:, :3]; np.multiply(x, 2, out=x)\n'    # the same view in and out: no copy
            'print([r for r, _ in cupy.copies])\n')
    r = run_fake(code)
    reasons = r.stdout.strip()
    assert reasons.count('non-contiguous operand') == 1 and reasons.count('overlaps') == 1
    assert reasons.count('out not C-contiguous') == 1


def test_missing_cuda_libraries_are_a_one_line_error(tmp_path):
    r = run_python(os.path.join('scripts', 'train_better_rnnlm.py'), {'FAKE_CUPY_NO_CUBLAS': '1'},
                   '--gpu', '--out-dir', str(tmp_path / 'out'), fake_cupy=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count('\n') == 1 and 'cupy-cuda12x[ctk]' in r.stderr and 'libcublas' in r.stderr
    assert 'Traceback' not in r.stderr


def test_deterministic_embedding_gradient_on_the_gpu_path():
    """DLFS_DETERMINISTIC=1 swaps cupy.add.at (float atomics) for a one-hot
    product; both give the NumPy path's sums, the product also with ids
    repeated many times and missing ones."""
    code = r'''
import json, numpy
from common import backend
rng = numpy.random.default_rng(0)
ids = rng.integers(0, 9, (6, 7)); ids[0, :] = 4
values = rng.standard_normal((6, 7, 5)).astype('float32')
a = backend.asarray(numpy.ones((12, 5), 'float32'))
backend.scatter_add(a, backend.asarray(ids), backend.asarray(values))
ref = numpy.ones((12, 5), 'float32'); numpy.add.at(ref, ids, values)
print(json.dumps({'fn': backend._add_at.__name__, 'err': float(abs(backend.asnumpy(a) - ref).max())}))
'''
    for env, onehot in (({}, False), ({'DLFS_DETERMINISTIC': '1'}, True)):
        out = json.loads(run_fake(code, **env).stdout.strip().splitlines()[-1])
        assert (out['fn'] == '_scatter_add_onehot') == onehot and out['err'] < 1e-5, out

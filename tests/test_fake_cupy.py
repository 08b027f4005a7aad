"""The stand-in CuPy captures graphs as a device does, and its stand-in
``nvmath.bindings.cublas`` multiplies as cuBLAS does, so that the CUDA-graph
path's bugs show on a machine without a GPU. Each program runs in a child with
tests/fake_cupy first on its path and prints one JSON line of findings."""
import json

import pytest

from helpers.processes import run_python

PRELUDE = r'''
import json, operator
import numpy
import cupy
import cupyx
from nvmath.bindings import cublas

def nan_everywhere(a):
    return bool(numpy.isnan(a.get()).all())


def attempt(fn):
    """None when fn() runs, else [exception type, message]."""
    try:
        fn()
    except Exception as e:
        return [type(e).__name__, str(e)]
    return None
'''

REPLAY = PRELUDE + r'''
kernel = cupy.ElementwiseKernel('T x, T y', 'T z', 'z = tanh(x) * y + max(x, y) - min(x, y)', 'mix')
squares = cupy.ReductionKernel('T x', 'T y', 'x * x', 'a + b', 'y = a', '0', 'dlfs_sum_squares')

def state(seed):
    rng = numpy.random.default_rng(seed)
    return dict(x=cupy.asarray(rng.standard_normal((4, 3))), w=cupy.asarray(rng.standard_normal(3)),
                idx=cupy.asarray([2, 0, 2]), acc=cupy.zeros(3), total=cupy.zeros(3), sq=cupy.zeros(()))

def step(x, w, idx, acc, total, sq):
    h = cupy.tanh(x * 2.0 + 1.0)               # a chain of ufuncs
    h[:, 0] = 0.5                              # setitem
    h *= w                                     # in place
    k = kernel(h, x)                           # an ElementwiseKernel
    g = k[idx]                                 # fancy indexing
    cupy.add(acc, g.sum(axis=0), out=acc)      # a ufunc with out=
    g.sum(axis=1, out=total)                   # a method with out=
    squares(k, out=sq)                         # a ReductionKernel into out
    s = squares(k, axis=0)                     # one that allocates its result
    acc += s
    cupyx.scatter_add(acc, idx, g[:, 0])
    return dict(k=k, g=g, s=s)

def host(d):
    return {name: a.get().tolist() for name, a in d.items() if name != 'idx'}

eager = state(0)
expected = host(dict(step(**eager), **eager))

captured = state(0)
before = host(captured)
stream = cupy.cuda.Stream(non_blocking=True)
with stream:
    stream.begin_capture()
    made = step(**captured)
    graph = stream.end_capture()
out = dict(restored=host(captured) == before, nodes=graph.node_count(),
           new_are_nan={name: nan_everywhere(a) for name, a in made.items()})
graph.launch()
out['replay_equals_eager'] = host(dict(made, **captured)) == expected

fresh = state(1)                               # new inputs written into the captured buffers
for name in ('x', 'w', 'acc'):
    captured[name][...] = fresh[name]
graph.launch()
out['replay_sees_new_inputs'] = host(dict(made, **captured)) == host(dict(step(**fresh), **fresh))

counter = cupy.zeros(2)
with stream:
    stream.begin_capture()
    counter += 1
    graph = stream.end_capture()
for _ in range(3):
    graph.launch()
out['counter'] = counter.get().tolist()

ints = cupy.arange(3)
with stream:
    stream.begin_capture()
    made_int = ints * 2
    stream.end_capture()
out['new_int_poisoned'] = made_int.get().tolist()
print(json.dumps(out))
'''

RANDOM = PRELUDE + r'''
gen = cupy.random.default_rng(7)
x = cupy.ones(1000, dtype='float32')
stream = cupy.cuda.Stream()
with stream:
    stream.begin_capture()
    mask = gen.random(x.shape, dtype='float32') > 0.5
    y = x * mask
    noise = gen.standard_normal((3,))
    graph = stream.end_capture()
after_capture = gen.random(4).get()
reference = numpy.random.default_rng(7)
out = dict(state_restored=after_capture.tolist() == reference.random(4).tolist())
draws = []
for _ in range(3):
    graph.launch()
    draws.append((y.get().tolist(), noise.get().tolist()))
out['masks_differ'] = len({tuple(m) for m, _ in draws}) == 3
out['normals_differ'] = len({tuple(n) for _, n in draws}) == 3
out['mask_is_binary'] = set(draws[0][0]) <= {0.0, 1.0}
print(json.dumps(out))
'''

REFUSALS = PRELUDE + r'''
a, b = cupy.ones((3, 3)), cupy.ones((3, 3))
s, i = a.sum(), cupy.asarray(1)
other = cupy.cuda.Stream()
CASES = {
    'matmul': lambda: cupy.matmul(a, b), 'operator @': lambda: a @ b, 'dot': lambda: cupy.dot(a, b),
    'ndarray.dot': lambda: a.dot(b), 'vdot': lambda: cupy.vdot(a, b), 'tensordot': lambda: cupy.tensordot(a, b, 1),
    'inner': lambda: cupy.inner(a, b), 'linalg.norm': lambda: cupy.linalg.norm(a),
    'get': lambda: a.get(), 'asnumpy': lambda: cupy.asnumpy(a), 'float': lambda: float(s),
    'int': lambda: int(s), 'bool': lambda: bool(s), 'index': lambda: operator.index(i), 'item': lambda: s.item(),
    'tolist': lambda: a.tolist(), 'repr': lambda: repr(a),
    'asarray of host': lambda: cupy.asarray(numpy.ones(2)), 'array of a list': lambda: cupy.array([1, 2]),
    'unique': lambda: cupy.unique(a), 'nonzero': lambda: cupy.nonzero(a), 'ndarray.nonzero': lambda: a.nonzero(),
    'argwhere': lambda: cupy.argwhere(a), 'flatnonzero': lambda: cupy.flatnonzero(a),
    'boolean mask': lambda: a[a > 0],
    'rand': lambda: cupy.random.rand(2), 'randn': lambda: cupy.random.randn(2), 'seed': lambda: cupy.random.seed(0),
    'random_sample': lambda: cupy.random.random_sample(2),
}
ONLY_DURING = {
    'an op on another stream': lambda: other.__enter__() and a + b,
    'stream synchronize': lambda: capturing.synchronize(),
    'device synchronize': lambda: cupy.cuda.Device().synchronize(),
    'graph launch': lambda: graph.launch(),
    'a second begin_capture': lambda: other.begin_capture(),
}

capturing = cupy.cuda.Stream()
with capturing:
    capturing.begin_capture()
    graph = capturing.end_capture()
out = dict(outside={name: attempt(fn) for name, fn in CASES.items()})
out['during'] = {}
for name, fn in {**CASES, **ONLY_DURING}.items():
    with capturing:
        capturing.begin_capture()
        out['during'][name] = attempt(fn)
        if cupy.cuda.get_current_stream() is other:
            other.__exit__()
        capturing.end_capture()
out['null stream'] = attempt(lambda: cupy.cuda.Stream.null.begin_capture())
out['usable after'] = float((a + b).sum())
x, y = numpy.arange(6.).reshape(2, 3), numpy.arange(12.).reshape(3, 4)
out['matmul outside'] = (cupy.matmul(cupy.asarray(x), cupy.asarray(y)).get() == x @ y).all().item()
print(json.dumps(out))
'''

GEMM = PRELUDE + r'''
rng = numpy.random.default_rng(3)

def stored(M, ld):
    """A device buffer holding M column-major with leading dimension ld; NaN padding."""
    buf = numpy.full((M.shape[1], ld), numpy.nan, M.dtype)
    buf[:, :M.shape[0]] = M.T
    return cupy.asarray(buf)

def read(buf, rows):
    return buf.get()[:, :rows].T

def host_scalar(value, dtype):
    return numpy.array([value], dtype)

def gemm(routine, handle, ta, tb, A, B, C, ld_pad=0, alpha=1.0, beta=0.0, scalar_dtype=None):
    """op(A) @ op(B) through cublas on column-major copies; the result and the C buffer."""
    dtype = A.dtype
    sa, sb = (A if ta == 0 else A.T), (B if tb == 0 else B.T)
    m, k, n = A.shape[0], A.shape[1], B.shape[1]
    dA, dB, dC = stored(sa, sa.shape[0] + ld_pad), stored(sb, sb.shape[0] + ld_pad), stored(C, m + ld_pad)
    al, be = host_scalar(alpha, scalar_dtype or dtype), host_scalar(beta, scalar_dtype or dtype)
    routine(handle, ta, tb, m, n, k, al.ctypes.data, dA.data.ptr, sa.shape[0] + ld_pad, dB.data.ptr,
            sb.shape[0] + ld_pad, be.ctypes.data, dC.data.ptr, m + ld_pad)
    return read(dC, m), dC

h = cublas.create()
out = dict(products={}, errors={})
for routine, dtype, tol in ((cublas.sgemm, 'float32', 1e-5), (cublas.dgemm, 'float64', 1e-12)):
    for ta in (cublas.Operation.N, cublas.Operation.T):
        for tb in (cublas.Operation.N, cublas.Operation.T):
            for pad, beta in ((0, 0.0), (3, 1.0)):
                A, B = rng.standard_normal((4, 5)).astype(dtype), rng.standard_normal((5, 2)).astype(dtype)
                C = rng.standard_normal((4, 2)).astype(dtype) if beta else numpy.full((4, 2), numpy.nan, dtype)
                got, dC = gemm(routine, h, ta, tb, A, B, C, pad, 2.0, beta)
                want = 2.0 * A @ B + (beta * C if beta else 0)
                padding_kept = bool(numpy.isnan(dC.get()[:, 4:]).all())
                out['products'][f'{dtype} {ta.name}{tb.name} pad {pad} beta {beta}'] = (
                    bool(numpy.abs(got - want).max() < tol * 10) and padding_kept)
A, B = numpy.ones((2, 2), 'float32'), numpy.ones((2, 2), 'float32')
out['float64 alpha to sgemm'] = gemm(cublas.sgemm, h, 0, 0, A, B, A, alpha=2.0, scalar_dtype='float64')[0].tolist()
out['calls'] = len(cublas.calls)
'''

GEMM_ERRORS = r'''
one, zero = host_scalar(1.0, 'float32'), host_scalar(0.0, 'float32')
dA = cupy.ones((3, 3), 'float32')
def call(handle=h, m=3, lda=3, alpha=one.ctypes.data):
    cublas.sgemm(handle, 0, 0, m, 3, 3, alpha, dA.data.ptr, lda, dA.data.ptr, 3, zero.ctypes.data, dA.data.ptr, 3)
gone = cublas.create()
cublas.destroy(gone)
out['errors'] = dict(lda=attempt(lambda: call(lda=2)), negative=attempt(lambda: call(m=-1)),
                     destroyed=attempt(lambda: call(handle=gone)),
                     host_array=attempt(lambda: cublas.sgemm(h, 0, 0, 1, 1, 1, one.ctypes.data, one.ctypes.data,
                                                             1, dA.data.ptr, 1, zero.ctypes.data, dA.data.ptr, 1)),
                     device_alpha_in_host_mode=attempt(lambda: call(alpha=dA.data.ptr)))
print(json.dumps(out))
'''

GEMM_GRAPH = PRELUDE + r'''
def row_major_product(handle, A, B, C, alpha, beta):
    """C = alpha * A @ B + beta * C for row-major device arrays (C^T = B^T A^T column-major)."""
    (m, k), n = A.shape, B.shape[1]
    cublas.sgemm(handle, 0, 0, n, m, k, alpha, B.data.ptr, n, A.data.ptr, k, beta, C.data.ptr, n)

rng = numpy.random.default_rng(5)
A, B = rng.standard_normal((3, 4)).astype('float32'), rng.standard_normal((4, 2)).astype('float32')
dA, dB, dC = cupy.asarray(A), cupy.asarray(B), cupy.zeros((3, 2), 'float32')
alpha, zero = numpy.array([1.0], 'float32'), numpy.array([0.0], 'float32')
stream = cupy.cuda.Stream(non_blocking=True)
workspace = cupy.cuda.MemoryPool().malloc(1 << 20)
h = cublas.create()
cublas.set_stream(h, stream.ptr)
cublas.set_workspace(h, workspace.ptr, 1 << 20)
with stream:
    stream.begin_capture()
    row_major_product(h, dA, dB, dC, alpha.ctypes.data, zero.ctypes.data)
    dD = cupy.tanh(dC)
    graph = stream.end_capture()
out = dict(restored=(dC.get() == 0).all().item(), new_nan=nan_everywhere(dD), nodes=graph.node_count())
graph.launch()
out['product'] = bool(numpy.allclose(dC.get(), A @ B, atol=1e-5))
out['after'] = bool(numpy.allclose(dD.get(), numpy.tanh(A @ B), atol=1e-5))
A2 = rng.standard_normal((3, 4)).astype('float32')
dA[...] = cupy.asarray(A2)
alpha[0] = 3.0                                  # host pointer mode: baked into the node at capture
graph.launch()
out['new_inputs'] = bool(numpy.allclose(dC.get(), A2 @ B, atol=1e-5))

cublas.set_pointer_mode(h, cublas.PointerMode.DEVICE)
d_alpha, d_zero = cupy.asarray(numpy.array([1.0], 'float32')), cupy.zeros(1, 'float32')
with stream:
    stream.begin_capture()
    row_major_product(h, dA, dB, dC, d_alpha.data.ptr, d_zero.data.ptr)
    graph = stream.end_capture()
d_alpha[...] = 2.0                              # device pointer mode: read at every launch
graph.launch()
out['device_alpha'] = bool(numpy.allclose(dC.get(), 2.0 * A2 @ B, atol=1e-5))
cublas.set_pointer_mode(h, cublas.PointerMode.HOST)

def attempt_in_capture(fn):
    with stream:
        stream.begin_capture()
        try:
            fn()
        except Exception as e:
            return [type(e).__name__, str(e)]
        finally:
            stream.end_capture()

def product():
    row_major_product(h, dA, dB, dC, alpha.ctypes.data, zero.ctypes.data)

cublas.set_stream(h, 0)
out['legacy stream handle'] = attempt_in_capture(product)
cublas.set_stream(h, cupy.cuda.Stream().ptr)
cublas.set_workspace(h, workspace.ptr, 1 << 20)
out['other stream handle'] = attempt_in_capture(product)
cublas.set_stream(h, stream.ptr)                # drops the workspace set before
out['no workspace'] = attempt_in_capture(product)
print(json.dumps(out))
'''


def findings(program):
    r = run_python(program, fake_cupy=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def replay():
    return findings(REPLAY)


@pytest.fixture(scope='module')
def refusals():
    return findings(REFUSALS)


@pytest.fixture(scope='module')
def gemm():
    return findings(GEMM + GEMM_ERRORS)


@pytest.fixture(scope='module')
def gemm_graph():
    return findings(GEMM_GRAPH)


def test_graph_replay_equals_running_the_step_eagerly(replay):
    assert replay['replay_equals_eager'] and replay['nodes'] >= 14, replay


def test_graph_replay_reads_inputs_written_into_the_captured_buffers(replay):
    assert replay['replay_sees_new_inputs'], replay


def test_capture_restores_buffers_that_existed_and_leaves_new_ones_nan(replay):
    assert replay['restored'], replay
    assert replay['new_are_nan'] == {'k': True, 'g': True, 's': True}, replay
    assert replay['new_int_poisoned'] == [2 ** 63 - 1] * 3, replay


def test_graph_state_carries_across_replays(replay):
    assert replay['counter'] == [3.0, 3.0], replay


def test_graph_random_draws_differ_between_replays_and_capture_restores_the_generator():
    out = findings(RANDOM)
    assert out == dict(state_restored=True, masks_differ=True, normals_differ=True, mask_is_binary=True), out


CUBLAS_CASES = ('matmul', 'operator @', 'dot', 'ndarray.dot', 'vdot', 'tensordot', 'inner', 'linalg.norm')
DATA_DEPENDENT = ('unique', 'nonzero', 'ndarray.nonzero', 'argwhere', 'flatnonzero', 'boolean mask')
HOST = ('get', 'asnumpy', 'float', 'int', 'bool', 'index', 'item', 'tolist', 'repr', 'asarray of host',
        'array of a list', 'rand', 'randn', 'seed', 'random_sample')


def test_capture_refuses_cublas_through_cupy(refusals):
    for name in CUBLAS_CASES:
        kind, message = refusals['during'][name]
        assert kind == 'NotImplementedError' and 'stream capture' in message, (name, message)


@pytest.mark.parametrize('name', DATA_DEPENDENT + HOST)
def test_capture_refuses_host_reads_copies_legacy_random_and_data_dependent_sizes(refusals, name):
    kind, message = refusals['during'][name]
    assert kind == 'RuntimeError' and 'capturing' in message, message


@pytest.mark.parametrize('name', ['an op on another stream', 'stream synchronize', 'device synchronize',
                                  'graph launch', 'a second begin_capture'])
def test_capture_refuses_other_streams_syncs_and_nested_captures(refusals, name):
    kind, message = refusals['during'][name]
    assert kind == 'RuntimeError', message


def test_capture_refuses_the_legacy_stream_and_everything_works_outside_capture(refusals):
    assert refusals['null stream'] == ['RuntimeError', 'cannot capture on the default (legacy) stream']
    assert {name: err for name, err in refusals['outside'].items() if err} == {}
    assert refusals['usable after'] == 18.0 and refusals['matmul outside'] is True


def test_gemm_matches_numpy_for_every_op_strided_ld_and_beta(gemm):
    assert len(gemm['products']) == 16 and all(gemm['products'].values()), gemm['products']
    assert gemm['calls'] == 17


def test_gemm_reads_alpha_at_its_dtype_so_a_float64_alpha_breaks_sgemm(gemm):
    # 2.0 as a float64 has four zero bytes first: sgemm reads alpha 0 and writes zeros, not 4s
    assert gemm['float64 alpha to sgemm'] == [[0.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize('name, status', [('lda', 'INVALID_VALUE'), ('negative', 'INVALID_VALUE'),
                                          ('destroyed', 'NOT_INITIALIZED'), ('host_array', 'EXECUTION_FAILED'),
                                          ('device_alpha_in_host_mode', 'EXECUTION_FAILED')])
def test_gemm_refuses_what_cublas_refuses(gemm, name, status):
    kind, message = gemm['errors'][name]
    assert kind == 'cuBLASError' and message.startswith(f'CUBLAS_STATUS_{status}'), message


def test_gemm_in_a_captured_graph_replays_on_new_inputs(gemm_graph):
    out = gemm_graph
    assert out['restored'] and out['new_nan'] and out['nodes'] == 2, out
    assert out['product'] and out['after'] and out['new_inputs'], out
    assert out['device_alpha'], out


@pytest.mark.parametrize('name, words', [('legacy stream handle', 'outside the graph'),
                                         ('other stream handle', 'outside the graph'),
                                         ('no workspace', 'workspace')])
def test_gemm_capture_refuses_a_handle_on_another_stream_or_without_workspace(gemm_graph, name, words):
    kind, message = gemm_graph[name]
    assert kind == 'RuntimeError' and words in message, message

"""The capturable GEMM (common/cuda/gemm.py) against cupy.matmul, on the
stand-in CuPy, whose cuBLAS executes raw addresses with column-major op/ld
semantics and reads alpha and beta at their dtype (tests/fake_cupy/nvmath):
every operand layout the layers use, beta 0 and 1, float32 and float64,
eagerly and inside a captured graph."""
import json

from helpers.processes import run_python

PROGRAM = r'''
import json, numpy, cupy
from nvmath.bindings import cublas
from common.cuda.gemm import Gemm, column_major

rng = numpy.random.default_rng(0)
gemm = Gemm(cupy)

def dev(*shape, dtype):
    return cupy.asarray(rng.standard_normal(shape).astype(dtype))

def layouts(rows, cols, dtype):
    """The same matrix as C-contiguous, a transposed view, a column block of a
    wider array and a row-strided block."""
    full = dev(rows, cols + 3, dtype=dtype)
    return {'C': dev(rows, cols, dtype=dtype), 'F': dev(cols, rows, dtype=dtype).T,
            'block': full[:, 1:cols + 1], 'rows': dev(2 * rows, cols, dtype=dtype)[::2]}

worst = {}
for dtype in ('float32', 'float64'):
    tol = 1e-5 if dtype == 'float32' else 1e-12
    for an, a in layouts(5, 4, dtype).items():
        for bn, b in layouts(4, 6, dtype).items():
            for outn in ('new', 'C', 'F', 'block'):
                for beta in (0, 1):
                    if outn == 'new' and beta:
                        continue
                    out = {'new': None, 'C': dev(5, 6, dtype=dtype), 'F': dev(6, 5, dtype=dtype).T,
                           'block': dev(5, 9, dtype=dtype)[:, 2:8]}[outn]
                    before = None if out is None else out.get()
                    got = gemm(a, b, out, beta=beta)
                    want = cupy.matmul(a, b).get() + (before if beta else 0)
                    err = float(abs(got.get() - want).max() / max(abs(want).max(), 1))
                    worst[f'{dtype} {an}@{bn} out={outn} beta={beta}'] = err / tol
print(json.dumps({'worst': max(worst.values()), 'cases': len(worst),
                  'bad': [k for k, v in worst.items() if v > 1], 'calls': gemm.calls}))
'''


def run_fake(code, **env):
    r = run_python(code, {'DLFS_GPU': '1', **env}, fake_cupy=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_gemm_equals_matmul_for_every_layout_beta_and_dtype():
    out = run_fake(PROGRAM)
    assert out['bad'] == [] and out['cases'] == 2 * 4 * 4 * 7, out
    assert out['calls'] == out['cases']           # every product went through cuBLAS


def test_column_major_reading_of_row_major_blocks():
    code = r'''
import json, cupy
from common.cuda.gemm import column_major
a = cupy.zeros((4, 9), dtype='float32')
print(json.dumps([column_major(a), column_major(a[:, 3:6]), column_major(a.T), column_major(a[:, 3:6].T),
                  column_major(a[::2, ::2])]))
'''
    assert run_fake(code) == [[True, 9], [True, 9], [False, 9], [False, 9], None]


def test_gemm_inside_a_graph_replays_with_new_inputs():
    """Captured once, the product follows what its operands hold at each launch;
    beta = 1 adds to out at every replay."""
    code = r'''
import json, numpy, cupy
from common.cuda.gemm import Gemm
gemm = Gemm(cupy)
rng = numpy.random.default_rng(1)
for dtype in ('float32', 'float64'):
    a = cupy.asarray(rng.standard_normal((3, 4)).astype(dtype))
    w = cupy.asarray(rng.standard_normal((6, 4)).astype(dtype))
    out = cupy.zeros((3, 6), dtype=dtype)
    acc = cupy.zeros((3, 6), dtype=dtype)
    gemm(a, w.T, out)                             # warm-up, eager
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        gemm(a, w.T, out)
        gemm(a, w.T, acc, beta=1)
        graph = stream.end_capture()
    errs = []
    for _ in range(3):
        a[...] = cupy.asarray(rng.standard_normal((3, 4)).astype(dtype))
        graph.launch()
        errs.append(float(abs(out.get() - a.get() @ w.get().T).max()))
    print(json.dumps([dtype, errs, float(abs(acc.get()).max()) > 0]))
'''
    r = run_python(code, {'DLFS_GPU': '1'}, fake_cupy=True)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        dtype, errs, accumulated = json.loads(line)
        assert max(errs) < (1e-5 if dtype == 'float32' else 1e-12) and accumulated, line


def test_gemm_accumulates_three_replays():
    code = r'''
import json, cupy
from common.cuda.gemm import Gemm
gemm = Gemm(cupy)
a = cupy.ones((2, 3), dtype='float32'); b = cupy.ones((3, 2), dtype='float32')
acc = cupy.zeros((2, 2), dtype='float32')
s = cupy.cuda.Stream(non_blocking=True)
with s:
    s.begin_capture(); gemm(a, b, acc, beta=1); g = s.end_capture()
before = float(acc.get().max())
for _ in range(3):
    g.launch()
print(json.dumps([before, float(acc.get().max())]))
'''
    assert run_fake(code) == [0.0, 9.0]


def test_gemm_refuses_mixed_dtypes_and_bad_shapes():
    code = r'''
import json, cupy
from common.cuda.gemm import Gemm
gemm = Gemm(cupy)
errors = []
for a, b in ((cupy.ones((2, 3), 'float32'), cupy.ones((3, 2), 'float64')),
             (cupy.ones((2, 3), 'float32'), cupy.ones((2, 2), 'float32')),
             (cupy.ones((2, 3), 'int64'), cupy.ones((3, 2), 'int64'))):
    try:
        gemm(a, b)
    except (TypeError, ValueError) as exc:
        errors.append(type(exc).__name__)
print(json.dumps(errors))
'''
    assert run_fake(code) == ['TypeError', 'ValueError', 'TypeError']


def test_gemm_sets_its_workspace_again_after_each_stream_change():
    """cublasSetStream resets the workspace to cuBLAS's default pool, which
    allocates during capture: the stand-in refuses a captured product then."""
    code = r'''
import json, cupy
from common.cuda.gemm import Gemm
gemm = Gemm(cupy)
a = cupy.ones((2, 2), dtype='float32')
gemm(a, a)                                    # binds the null stream
s = cupy.cuda.Stream(non_blocking=True)
with s:
    s.begin_capture(); out = gemm(a, a); g = s.end_capture()
g.launch()
print(json.dumps(float(out.get().max())))
'''
    assert run_fake(code) == 2.0


def test_matmul_routes_through_the_gemm_once_installed():
    code = r'''
import json, cupy
from common import backend
from common.cuda.gemm import Gemm
a = cupy.ones((2, 3), dtype='float32'); b = cupy.ones((3, 4), dtype='float32')
backend.matmul(a, b)
gemm = Gemm(cupy); backend.use_gemm(gemm)
c = backend.matmul(a, b); d = cupy.zeros((2, 4), dtype='float32'); backend.matmul_add(a, b, d)
backend.use_gemm(None)
print(json.dumps([gemm.calls, float(c.get().max()), float(d.get().max())]))
'''
    assert run_fake(code) == [2, 3.0, 3.0]


def test_missing_nvmath_is_a_one_line_error_with_the_fix():
    code = r'''
import sys
sys.modules['nvmath'] = None
from common.cuda.gemm import load_cublas
from common.errors import BackendError
try:
    load_cublas()
except BackendError as exc:
    print(exc)
'''
    r = run_python(code, {'DLFS_GPU': '1'}, fake_cupy=True)
    assert r.returncode == 0 and 'pip install nvmath-python' in r.stdout
    assert r.stdout.count('\n') == 1


def test_tf32_is_opt_in_and_reaches_the_handle():
    """cuBLAS keeps full float32 unless --tf32 / DLFS_TF32 asks for TF32."""
    code = r'''
import json
from nvmath.bindings import cublas
from common.cuda.graph import install_gemm
gemm = install_gemm()
print(json.dumps([gemm.tf32, int(cublas.get_math_mode(gemm.handle))]))
'''
    assert run_fake(code) == [False, 0]
    assert run_fake(code, DLFS_TF32='1') == [True, 3]

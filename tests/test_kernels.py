"""Every CUDA kernel of the project, compiled with NVRTC as CuPy compiles it.

The GPU path's only hand-written CUDA is the fused GRU steps in
``common/kernels.py`` (``KERNELS``: name -> (in_params, out_params, body)),
each turned into a ``cupy.ElementwiseKernel``. CuPy compiles such a kernel at
its first call, on the device; this test compiles the same source here,
without a device, so that a syntax or type error in a kernel body fails CI
instead of the first ``--gpu`` run.

The source is CuPy's own, not a copy of its template. With CuPy 14:

* ``cupy._core._kernel._get_elementwise_kernel_code`` (a Python-visible
  function of ``cupy/_core/_kernel.pyx``) builds the kernel source from the
  kernel's parameters and body, an ``_ArgInfo`` per argument (array dtype,
  ndim, contiguity, 32-bit indexing; the ``CIndexer`` last) and the type map
  that ``ElementwiseKernel._decide_params_type`` derives from the dtypes.
  ``ElementwiseKernel.__call__`` does the same, from the arrays it is given.
* ``compile_with_cache`` (``cupy/_core/core.pyx``) prepends
  ``#include <...>`` of each header in ``cupy._core.core._cupy_header_list``
  and takes its options from ``assemble_cupy_compiler_options``;
  ``_compile_with_cache_cuda`` (``cupy/cuda/compiler.py``) adds ``-ftz=true``;
  ``_compile_using_nvrtc_no_warning`` adds ``-arch=sm_XX`` (a cubin; the
  device's compute capability on a real run, given explicitly here) and
  ``--device-as-default-execution-space``, and compiles with
  ``_NVRTCProgram``.

The last step is reproduced, not called: ``compile_using_nvrtc`` asks the
runtime for the current device even when ``arch`` is given.

Each kernel is compiled for sm_70, sm_80 and sm_90, for float32 and float64,
in the two argument layouts the GRU step produces: all operands contiguous
(CuPy reduces them to one dimension) and (N, H) strided views of wider
buffers (two dimensions, not contiguous). The float32 kernels must also be
free of double-precision arithmetic (no ``.f64`` in their PTX).

Skipped where CuPy or NVRTC is missing; a failure in CI, which installs both
(``.ci/run``).
"""

import json

import numpy
import pytest
from helpers import IN_CI
from common.kernels import KERNELS


ARCHS = (70, 80, 90)


DTYPES = (numpy.float32, numpy.float64)


LAYOUTS = {'contiguous': (1, True), 'strided': (2, False)}   # (ndim, c_contiguous) of every array argument


# Values of cupy/_core/_kernel.pxd's _ArgKind enum (the generated source is
# checked below for the types they stand for).
ARG_KIND_NDARRAY, ARG_KIND_INDEXER = 1, 2


def _require(condition, why):
    if not condition:
        (pytest.fail if IN_CI else pytest.skip)(why)


@pytest.fixture(scope='module')
def cupy():
    try:
        import cupy
        from cupy.cuda import nvrtc
        version = nvrtc.getVersion()
    except Exception as exc:   # ImportError, or the NVRTC library not found
        _require(False, f'CuPy with NVRTC is not available ({type(exc).__name__}: {exc}); '
                        f'pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12')
    _require(int(cupy.__version__.split('.')[0]) >= 13, f'CuPy {cupy.__version__}: the test reads CuPy 13+ internals')
    _require(max(ARCHS) <= int(cupy.cuda.compiler._get_max_compute_capability()),
             f'NVRTC {version} cannot compile for sm_{max(ARCHS)}')
    return cupy


def kernel_source(cupy, name, dtype, layout):
    """The complete source CuPy compiles for ``KERNELS[name]`` called with
    arrays of ``dtype`` in ``layout`` (without the headers' text)."""
    from cupy._core import _carray, _kernel, core
    in_params, out_params, body = KERNELS[name]
    kernel = cupy.ElementwiseKernel(in_params, out_params, body, name)   # as common.kernels builds it
    dtype = numpy.dtype(dtype)
    _, _, type_map = kernel._decide_params_type((dtype,) * kernel.nin, (dtype,) * kernel.nout)
    ndim, contiguous = LAYOUTS[layout]
    arginfos = tuple(_kernel._ArgInfo(ARG_KIND_NDARRAY, cupy.ndarray, dtype, ndim, contiguous, True)
                     for _ in range(kernel.nargs))
    arginfos += (_kernel._ArgInfo(ARG_KIND_INDEXER, _carray.Indexer, None, ndim, True, True),)
    code = _kernel._get_elementwise_kernel_code(arginfos, type_map, kernel.params, kernel.operation,
                                                kernel.name, kernel.preamble, **kernel.kwargs)
    ctype = {numpy.float32: 'float', numpy.float64: 'double'}[dtype.type]
    assert f'CArray<{ctype}, {ndim}, {int(contiguous)}, 1' in code and f'CIndexer<{ndim}, 1>' in code, code
    assert f'typedef {ctype} T;' in code and body in code, code
    headers = ''.join(f'#include <{h}>\n' for h in core._cupy_header_list)
    return headers + code


def nvrtc_compile(cupy, source, arch, method='cubin'):
    """NVRTC with CuPy's options for an ElementwiseKernel; raises
    ``CompileException`` with the compiler's log on any error."""
    from cupy._core import core
    from cupy.cuda import compiler
    options = core.assemble_cupy_compiler_options(()) + ('-ftz=true',)
    options += (f'-arch={"sm" if method == "cubin" else "compute"}_{arch}', '--device-as-default-execution-space')
    out, _ = compiler._NVRTCProgram(source, 'kern.cu', method=method).compile(options)
    return out


@pytest.mark.parametrize('dtype', DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize('name', sorted(KERNELS))
def test_kernel_compiles_with_nvrtc(cupy, name, dtype):
    for layout in LAYOUTS:
        source = kernel_source(cupy, name, dtype, layout)
        for arch in ARCHS:
            try:
                cubin = nvrtc_compile(cupy, source, arch)
            except cupy.cuda.compiler.CompileException as exc:
                pytest.fail(f'{name} ({dtype.__name__}, {layout}, sm_{arch}) does not compile:\n{exc}\n'
                            f'--- source ---\n{source}', pytrace=False)
            assert len(cubin) > 0


@pytest.mark.parametrize('name', sorted(KERNELS))
def test_float32_kernel_has_no_double_arithmetic(cupy, name):
    """A double literal or function in a body would silently run the float32
    kernel in float64 (slow on most GPUs): its PTX has no .f64 instruction."""
    ptx = nvrtc_compile(cupy, kernel_source(cupy, name, numpy.float32, 'strided'), 80, method='ptx')
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    f64 = [line.strip() for line in ptx.splitlines() if '.f64' in line]
    assert not f64, f'{name}: double-precision instructions in the float32 kernel:\n' + '\n'.join(f64[:10])


# -- the kernel bodies' arithmetic, on the stand-in CuPy -------------------------------------------

FUSED_PROGRAM = r'''
import json, numpy
from common import backend, kernels
from common.time_layers import GRU, TimeGRU
assert kernels.FUSED == (backend.np.__name__ == 'cupy')
rng = numpy.random.default_rng(0)
N, T, D, H = 2, 5, 3, 4
Wx, Wh, b, bh = (backend.asarray(rng.standard_normal(s) * 0.5) for s in ((D, 3 * H), (H, 3 * H), (3 * H,), (3 * H,)))
xs, h0, dhs = (backend.asarray(rng.standard_normal(s)) for s in ((N, T, D), (N, H), (N, T, H)))
layer = TimeGRU(Wx, Wh, b, stateful=True, reset_after=True, bh=bh)
layer.set_state(h0)
out = [layer.forward(xs), layer.backward(dhs), layer.dh, layer.cache[2], *layer.grads]
cell = GRU(Wx, Wh, b, reset_after=True, bh=bh)
out += [cell.forward(xs[:, 0], h0), *cell.backward(dhs[:, 0]), *cell.grads]
print(json.dumps([backend.asnumpy(a).tolist() for a in out]))
'''


def test_reset_after_kernels_match_the_numpy_steps():
    """gru_forward_after and gru_backward_after, their CUDA bodies evaluated by
    the stand-in CuPy, against the NumPy steps: TimeGRU(reset_after=True) and
    its per-step cell give the same outputs, gradients and cached activations."""
    from helpers.processes import run_python
    runs = [run_python(FUSED_PROGRAM, env, fake_cupy=True) for env in ({}, {'DLFS_GPU': '1'})]
    for r in runs:
        assert r.returncode == 0, r.stderr
    cpu, gpu = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert len(cpu) == len(gpu) == 15
    for i, (a, b) in enumerate(zip(gpu, cpu)):
        numpy.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f'array {i}')
    bug = run_python(FUSED_PROGRAM, {'DLFS_GPU': '1', 'FAKE_CUPY_KERNEL_BUG': '1'}, fake_cupy=True)
    wrong = json.loads(bug.stdout.strip().splitlines()[-1])
    assert numpy.abs(numpy.array(wrong[0]) - numpy.array(cpu[0])).max() > 1e-4   # the comparison can fail


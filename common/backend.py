"""The array backend, behind the book's ``common.np``.

``np`` is NumPy, or CuPy when :data:`common.config.GPU` is true at the first
import of this module (``from common.np import *`` hands it on, as in the
book). This is the only module that chooses the backend; the
rest of the framework is written once against ``np``. The few operations whose
NumPy and CuPy spellings differ live here, each behind one helper:

* :func:`scatter_add`      -- ``a[idx] += v`` that sums repeated indices;
* :func:`asnumpy`, :func:`asarray` -- explicit host <-> backend transfers;
* :func:`uniform`, :func:`seed`, :func:`get_rng_state`, :func:`set_rng_state`
  -- the generator behind dropout masks, on the backend's own device.

Asking for the GPU without a usable CuPy raises :class:`BackendError` with the
fix in its message; there is no silent fallback to the CPU.
"""
import numpy

from common import config
from common.errors import BackendError

__all__ = ['np']

CUPY_INSTALL_HINT = ("install CuPy for your CUDA version, e.g. pip install 'cupy-cuda12x[ctk]' "
                     "(or pip install -e '.[gpu]'), or run without --gpu / DLFS_GPU")


def _load_cupy():
    try:
        import cupy
    except ImportError as exc:
        raise BackendError(f"GPU requested (config.GPU / DLFS_GPU=1) but CuPy cannot be imported "
                           f"({exc}): {CUPY_INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, driver missing, ...
        raise BackendError(f"GPU requested but CuPy finds no usable CUDA device ({exc}): "
                           f"check the NVIDIA driver with nvidia-smi, or run without --gpu") from None
    if count < 1:
        raise BackendError("GPU requested but CuPy sees 0 CUDA devices: "
                           "check CUDA_VISIBLE_DEVICES and nvidia-smi, or run without --gpu")
    try:   # one product (cuBLAS) and one compiled kernel (NVRTC): the libraries load here, not mid-run
        a = cupy.ones((2, 2), dtype='float32')
        float((a @ a).sum() + cupy.ElementwiseKernel('T x', 'T y', 'y = x + 1', 'dlfs_probe')(a).sum())
    except Exception as exc:  # ImportError "Failure finding libcublasLt...", CompileException, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"GPU requested but CuPy cannot run on the device ({type(exc).__name__}: {first}): "
                           f"install the CUDA libraries CuPy needs, e.g. pip install 'cupy-cuda12x[ctk]' "
                           f"(or pip install -e '.[gpu]'), or a CUDA toolkit; or run without --gpu") from None
    return cupy


GPU = bool(config.GPU)
if GPU:
    np = _load_cupy()
else:
    np = numpy


def check_backend():
    """Raise if ``config.GPU`` was changed after the backend was chosen."""
    if bool(config.GPU) != GPU:
        chosen = 'CuPy' if GPU else 'NumPy'
        raise BackendError(f"config.GPU changed to {config.GPU} after the backend ({chosen}) was chosen: "
                           f"set it before the first 'import common.np' (or use DLFS_GPU=1)")


# -- host <-> backend --------------------------------------------------------

def asnumpy(x):
    """The host (NumPy) copy of ``x``; ``x`` itself when it already is one."""
    if isinstance(x, (numpy.ndarray, numpy.generic)) or not hasattr(x, 'shape'):
        return numpy.asarray(x)
    return np.asnumpy(x)


def asarray(x, dtype=None):
    """``x`` as a backend array (a host-to-device copy on the GPU)."""
    return np.asarray(x, dtype=dtype)


def synchronize():
    """Wait for the device to finish queued work (timing); nothing on NumPy."""
    if GPU:
        np.cuda.Device().synchronize()


def row_blocks(n_rows, row_bytes, block_bytes=1 << 19):
    """Slices that cut ``n_rows`` rows of ``row_bytes`` each into blocks of
    about ``block_bytes``, so that a chain of elementwise passes over a block
    runs in the CPU's cache. On the GPU, one slice: a kernel wants it all."""
    if GPU:
        return [slice(0, n_rows)]
    step = max(1, block_bytes // max(row_bytes, 1))
    return [slice(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step)]


# -- matrix products ---------------------------------------------------------
#
# The layers multiply through these two. On NumPy they are NumPy's matmul. On
# CuPy they are cupy.matmul, or, once the CUDA-graph path installs its GEMM
# (:func:`use_gemm`), cuBLAS on the framework's own handle: the one way to
# multiply while a stream captures (common/cuda/gemm.py).

_gemm = None         # common.cuda.gemm.Gemm, or None for cupy.matmul


def use_gemm(gemm):
    """Route the 2-D products of :func:`matmul` and :func:`matmul_add` to
    ``gemm`` (a :class:`common.cuda.gemm.Gemm`); None goes back to cupy.matmul."""
    global _gemm
    _gemm = gemm


def _matmul(a, b, out=None):
    """``a @ b`` (into ``out`` when given)."""
    if _gemm is not None and a.ndim == 2 and b.ndim == 2:
        return _gemm(a, b, out)
    return np.matmul(a, b, out=out)


def matmul_add(a, b, out, scratch=None):
    """``out += a @ b``: one product with beta = 1 through the graph path's
    GEMM; otherwise the product into ``scratch`` (allocated when None), added."""
    if _gemm is not None:
        _gemm(a, b, out, beta=1)
    else:
        out += np.matmul(a, b, out=scratch)


matmul = numpy.matmul if not GPU else _matmul

_sum_squares_kernel = None


def sum_squares(x):
    """Σ x² as a 0-d backend array: a BLAS dot product on NumPy, one
    reduction kernel on CuPy (no cuBLAS, no temporary)."""
    global _sum_squares_kernel
    if not GPU:
        flat = x.ravel()
        return numpy.vdot(flat, flat)
    if _sum_squares_kernel is None:
        _sum_squares_kernel = np.ReductionKernel('T x', 'T y', 'x * x', 'a + b', 'y = a', '0', 'dlfs_sum_squares')
    return _sum_squares_kernel(x)


# -- scatter-add -------------------------------------------------------------

def _scatter_add_sorted(a, indices, values):
    """NumPy: sort the indices, sum the rows of each run with one reduceat,
    add each sum once (2.2 ms against np.add.at's 2.9 ms for the book-size
    embedding gradient)."""
    indices = indices.ravel()
    values = values.reshape(len(indices), -1)
    order = numpy.argsort(indices, kind='stable')
    idx = indices[order]
    starts = numpy.flatnonzero(numpy.r_[True, idx[1:] != idx[:-1]])
    a.reshape(len(a), -1)[idx[starts]] += numpy.add.reduceat(values[order], starts, axis=0)


def _scatter_add_onehot(a, indices, values):
    """Deterministic on any backend: the rows of each distinct id summed by
    one matrix product, ``a[u] += onehot(u, indices) @ values``, with u the
    distinct ids (sorted), so no two additions race for one row."""
    indices = indices.ravel()
    values = values.reshape(len(indices), -1)
    u, inverse = np.unique(indices, return_inverse=True)
    onehot = (np.arange(len(u))[:, None] == inverse.ravel()[None, :]).astype(values.dtype)
    a.reshape(len(a), -1)[u] += onehot @ values


if not GPU:
    _add_at = _scatter_add_sorted
elif config.DETERMINISTIC:
    _add_at = _scatter_add_onehot
elif hasattr(np.add, 'at'):
    _add_at = np.add.at
else:  # CuPy before ufunc.at existed
    import cupyx
    _add_at = cupyx.scatter_add


def scatter_add(a, indices, values):
    """``a[indices] += values`` along the first axis, where repeated indices
    add up (``np.add.at``). ``indices``: integer array of any shape;
    ``values``: ``indices.shape + a.shape[1:]``."""
    _add_at(a, indices, values)


# -- random numbers for dropout ------------------------------------------------
#
# In the book, weights and dropout masks both come from NumPy's global
# generator, so ``np.random.seed(s)`` before building a model fixes a whole
# run. Masks here come from a faster generator on the backend (PCG64 on NumPy,
# CuPy's on the GPU), and to keep the book's rule it is seeded from NumPy's
# global generator, lazily: at the first mask drawn after the global generator
# moved (seeded, or drawn from, e.g. for initial weights). Which masks a run
# draws is then a function of the global generator's seed alone.

_rng = None          # the backend generator; None until the first mask
_host_mark = None    # NumPy's global state right after _rng was seeded from it
_shared = None       # (rows, total): this process's block of a data-parallel batch


def _host_state():
    _, key, pos, has_gauss, gauss = numpy.random.get_state()
    return key, int(pos), int(has_gauss), float(gauss)


def _host_unmoved():
    """Whether NumPy's global generator is where it was when ``_rng`` was
    seeded from it (one state copy: ~30 us, against milliseconds per mask)."""
    if _rng is None or _host_mark is None:
        return False
    key, *rest = _host_state()
    return rest == list(_host_mark[1:]) and numpy.array_equal(key, _host_mark[0])


def _generator():
    global _rng, _host_mark
    if not _host_unmoved():
        _rng = np.random.default_rng(int(numpy.random.randint(0, 2**64, dtype=numpy.uint64)))
        _host_mark = _host_state()
    return _rng


def seed(value):
    """Seed NumPy's global generator (initial weights, sentence order); the
    dropout generator follows it at its next use. The same as
    ``numpy.random.seed(value)``, kept for code that calls it."""
    global _rng, _host_mark
    numpy.random.seed(value)
    _rng = _host_mark = None


def share_rows(rows, total):
    """Data-parallel training: this process trains the ``rows`` (a slice) of
    batches of ``total`` rows. Masks are then drawn for all ``total`` rows
    and it keeps its own, so K processes apply exactly the masks one process
    would (their generators are alike: seeded alike, drawn alike).
    ``share_rows(None, None)`` goes back to plain draws."""
    global _shared
    _shared = None if rows is None else (rows, total)


def uniform(shape, dtype, rows=True):
    """Uniform [0, 1) samples of ``dtype`` drawn on the backend. With
    ``rows`` the first axis is the batch's rows (see :func:`share_rows`);
    otherwise (a mask over words or weights) every process draws the same
    whole array, as one process would."""
    if _shared is None or not rows:
        return _generator().random(shape, dtype=dtype)
    rows, total = _shared
    if len(range(total)[rows]) != shape[0]:
        raise ValueError(f'a mask of {shape[0]} rows in a data-parallel run whose processes train '
                         f'{len(range(total)[rows])} rows each')
    return _generator().random((total,) + tuple(shape[1:]), dtype=dtype)[rows]


def get_rng_state():
    """The generators' state as plain JSON-able data: NumPy's global one
    (``host``), the dropout generator's (``backend``; ``None`` before its
    first use and on CuPy, whose generators cannot be serialised), and
    whether that one is still current (``backend_current``: false when the
    next mask seeds it anew from ``host``)."""
    _, key, pos, has_gauss, gauss = numpy.random.get_state()
    host = {'key': key.tolist(), 'pos': int(pos), 'has_gauss': int(has_gauss), 'gauss': float(gauss)}
    backend = None if GPU or _rng is None else _rng.bit_generator.state
    return {'host': host, 'backend': backend, 'backend_current': _host_unmoved()}


def set_rng_state(state):
    """Restore what :func:`get_rng_state` returned: the next mask is the one
    the saved run would have drawn (on CuPy only when the saved dropout
    generator was not current; otherwise the current one goes on)."""
    global _rng, _host_mark
    h = state['host']
    numpy.random.set_state(('MT19937', numpy.asarray(h['key'], dtype=numpy.uint32), h['pos'],
                            h['has_gauss'], h['gauss']))
    if not GPU:
        _rng = None
        if state.get('backend') is not None:
            _rng = np.random.default_rng()
            _rng.bit_generator.state = state['backend']
    current = state.get('backend_current', True)      # older checkpoints: always current
    _host_mark = _host_state() if current and _rng is not None else None

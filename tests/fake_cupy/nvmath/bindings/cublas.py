"""A stand-in for ``nvmath.bindings.cublas`` (nvmath-python 1.0) on the stand-in CuPy.

The names and signatures of the real binding; every pointer is a raw integer
address. ``sgemm``/``dgemm`` are column-major BLAS exactly:
``C = alpha * op(A) @ op(B) + beta * C`` with ``op(A)`` m x k, ``op(B)`` k x n,
C m x n, each stored column-major with its leading dimension. ``alpha`` and
``beta`` are read at the routine's dtype from their addresses: at the call in
``PointerMode.HOST`` (baked into a captured node), at each execution in
``PointerMode.DEVICE``. ``beta == 0`` means C is not read.

Strict where a device would fail or silently go wrong:

* A, B and C (and alpha/beta in DEVICE mode) must lie in live device arrays;
  alpha/beta in HOST mode must not;
* during a capture, a product on a handle whose stream is not the capturing one
  raises (on a device it would run outside the graph), and so does one on a
  handle without a workspace set since its last ``set_stream`` (cuBLAS would
  allocate one from the pool during the capture);
* leading dimensions and sizes are checked as cuBLAS checks them.

:data:`calls` lists every product called, so tests can see they went through here.
"""
import ctypes
import enum
import itertools

import numpy as _np
from numpy.lib.stride_tricks import as_strided

from cupy import _graph


class Operation(enum.IntEnum):
    N = 0
    T = 1
    C = 2


class PointerMode(enum.IntEnum):
    HOST = 0
    DEVICE = 1


class Math(enum.IntEnum):
    DEFAULT_MATH = 0
    TENSOR_OP_MATH = 1
    PEDANTIC_MATH = 2
    TF32_TENSOR_OP_MATH = 3


class Status(enum.IntEnum):
    SUCCESS = 0
    NOT_INITIALIZED = 1
    ALLOC_FAILED = 3
    INVALID_VALUE = 7
    EXECUTION_FAILED = 13


class cuBLASError(Exception):
    """A cuBLAS status other than success: ``status`` and a message naming it."""

    def __init__(self, status, detail=''):
        self.status = Status(status)
        super().__init__(f'CUBLAS_STATUS_{self.status.name}' + (f' ({detail})' if detail else ''))


#: (routine, transa, transb, m, n, k) of every product called.
calls = []


class _Handle:
    def __init__(self):
        self.stream = 0
        self.workspace = None          # (ptr, bytes) set since the last set_stream, or None
        self.pointer_mode = PointerMode.HOST
        self.math_mode = Math.DEFAULT_MATH


_handles = {}
_numbers = itertools.count(0x5000_0000, 0x10)


def _handle(handle):
    if handle not in _handles:
        raise cuBLASError(Status.NOT_INITIALIZED, f'handle {handle:#x} was not created or was destroyed')
    return _handles[handle]


def create():
    handle = next(_numbers)
    _handles[handle] = _Handle()
    return handle


def destroy(handle):
    _handle(handle)
    del _handles[handle]


def set_stream(handle, stream_id):
    """The stream the handle's work goes to; it drops a workspace set before (as cuBLAS does)."""
    h = _handle(handle)
    h.stream, h.workspace = int(stream_id), None


def get_stream(handle):
    return _handle(handle).stream


def set_workspace(handle, workspace, workspace_size_in_bytes):
    h = _handle(handle)
    if workspace_size_in_bytes and _graph.find_buffer(workspace, workspace_size_in_bytes) is None:
        raise cuBLASError(Status.INVALID_VALUE, f'workspace {workspace:#x} ({workspace_size_in_bytes} bytes) '
                                                'is not inside a live device buffer')
    h.workspace = (int(workspace), int(workspace_size_in_bytes))


def set_pointer_mode(handle, mode):
    _handle(handle).pointer_mode = PointerMode(mode)


def get_pointer_mode(handle):
    return _handle(handle).pointer_mode


def set_math_mode(handle, mode):
    _handle(handle).math_mode = Math(mode)


def get_math_mode(handle):
    return _handle(handle).math_mode


def _check_sizes(transa, transb, m, n, k, lda, ldb, ldc):
    """The stored shapes of A and B; cuBLASError for what cuBLAS refuses."""
    if transa not in tuple(Operation) or transb not in tuple(Operation):
        raise cuBLASError(Status.INVALID_VALUE, f'transa {transa}, transb {transb}: not an Operation')
    if min(m, n, k) < 0:
        raise cuBLASError(Status.INVALID_VALUE, f'm {m}, n {n}, k {k}: sizes must be >= 0')
    shape_a = (m, k) if transa == Operation.N else (k, m)
    shape_b = (k, n) if transb == Operation.N else (n, k)
    for name, ld, rows in (('lda', lda, shape_a[0]), ('ldb', ldb, shape_b[0]), ('ldc', ldc, m)):
        if ld < max(1, rows):
            raise cuBLASError(Status.INVALID_VALUE, f'{name} {ld} < max(1, {rows}), the rows of the stored matrix')
    return shape_a, shape_b


def _device_buffer(ptr, nbytes, what):
    owner = _graph.find_buffer(ptr, nbytes)
    if owner is None:
        raise cuBLASError(Status.EXECUTION_FAILED, f'{what} at {ptr:#x} ({nbytes} bytes) is not inside a live '
                                                   'device array (an illegal address on a device)')
    return owner


def _matrix(ptr, shape, ld, dtype):
    """The column-major matrix of ``shape`` at ``ptr`` with leading dimension ``ld``: a NumPy view."""
    rows, cols = shape
    count = (cols - 1) * ld + rows if rows and cols else 0
    flat = _np.ctypeslib.as_array((ctypes.c_uint8 * max(count * dtype.itemsize, 1)).from_address(ptr))
    flat = flat.view(dtype)[:count]
    return as_strided(flat, shape=shape, strides=(dtype.itemsize, ld * dtype.itemsize))


def _extent(shape, ld, dtype):
    rows, cols = shape
    return ((cols - 1) * ld + rows) * dtype.itemsize if rows and cols else 0


def _scalar(ptr, dtype):
    return _np.ctypeslib.as_array((ctypes.c_uint8 * dtype.itemsize).from_address(ptr)).view(dtype)[0]


def _scalars(h, alpha, beta, dtype):
    """``(keep, read)``: the buffers alpha and beta lie in, and a function giving their values."""
    on_device = [_graph.find_buffer(p, dtype.itemsize) for p in (alpha, beta)]
    if h.pointer_mode == PointerMode.DEVICE:
        keep = [_device_buffer(p, dtype.itemsize, name) for p, name in ((alpha, 'alpha'), (beta, 'beta'))]
        return keep, lambda: (_scalar(alpha, dtype), _scalar(beta, dtype))
    if any(b is not None for b in on_device):
        raise cuBLASError(Status.EXECUTION_FAILED, 'alpha/beta point into device memory in PointerMode.HOST: '
                                                   'the host would read a device address')
    values = (_scalar(alpha, dtype), _scalar(beta, dtype))
    return [], lambda: values


def _product(dtype, ops, shapes, lds, pointers, m, n, scalars):
    """The product as a function of no arguments, run now and at each launch."""
    (transa, transb), (shape_a, shape_b), (lda, ldb, ldc), (a, b, c) = ops, shapes, lds, pointers

    def run():
        alpha, beta = scalars()
        C = _matrix(c, (m, n), ldc, dtype)
        if C.size == 0:
            return
        A = _matrix(a, shape_a, lda, dtype)
        B = _matrix(b, shape_b, ldb, dtype)
        opA = A if transa == Operation.N else A.T
        opB = B if transb == Operation.N else B.T
        product = alpha * (opA @ opB) if alpha != 0 else _np.zeros((m, n), dtype)
        C[...] = product if beta == 0 else product + beta * C
    return run


def _gemm(dtype, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    h = _handle(handle)
    dtype = _np.dtype(dtype)
    shapes = _check_sizes(transa, transb, m, n, k, lda, ldb, ldc)
    calls.append(('sgemm' if dtype == _np.float32 else 'dgemm', transa, transb, m, n, k))
    capture = _graph.active
    if capture is not None:
        if h.stream != capture.stream.ptr:
            raise RuntimeError(f'a cuBLAS product on stream {h.stream:#x} while stream {capture.stream.ptr:#x} '
                               'captures: on a device it would run outside the graph (set_stream the handle '
                               'to the capturing stream)')
        if h.workspace is None:
            raise RuntimeError('a cuBLAS product during a capture on a handle without a workspace set since its '
                               'last set_stream: cuBLAS would allocate one during the capture (call set_workspace)')
    keep = [_device_buffer(p, _extent(shape, ld, dtype), name)
            for p, shape, ld, name in ((a, shapes[0], lda, 'A'), (b, shapes[1], ldb, 'B'), (c, (m, n), ldc, 'C'))
            if _extent(shape, ld, dtype)]
    kept, scalars = _scalars(h, alpha, beta, dtype)
    run = _product(dtype, (transa, transb), shapes, (lda, ldb, ldc), (a, b, c), m, n, scalars)
    run()
    _graph.record(_graph.Node(run, keep=keep + kept))


def sgemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """C = alpha * op(A) @ op(B) + beta * C in float32 (column-major; see the module)."""
    _gemm(_np.float32, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


def dgemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """C = alpha * op(A) @ op(B) + beta * C in float64 (column-major; see the module)."""
    _gemm(_np.float64, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

"""Matrix products that CUDA stream capture accepts.

CuPy 14 refuses every cuBLAS call while a stream captures (its ``setStream``
raises), so ``cupy.matmul`` cannot be part of a CUDA graph. :class:`Gemm`
calls cuBLAS itself through NVIDIA's ``nvmath-python`` bindings
(``nvmath.bindings.cublas``), on a handle of its own:

* the handle's stream is the current CuPy stream, set before each product
  when it changed, and its workspace a buffer allocated once: setting the
  stream resets cuBLAS to its default workspace, which would allocate during
  a capture;
* pointer mode host; alpha and beta are read from small host arrays of the
  operands' dtype that live as long as the object (a float64 1.0 read as
  float32 is 0.0, and a freed temporary is garbage);
* TF32 only when asked for (``tf32=True``): cuBLAS's default keeps float32
  products in full float32.

NumPy arrays are row-major and cuBLAS is column-major. A row-major block
with row stride ``ld`` is, read column-major, its transpose with the same
``ld``; so ``C = A B`` (row-major) is computed as ``Cᵀ = Bᵀ Aᵀ``, and a
transposed view (column-major in memory) is passed with ``op = T``. Strided
blocks such as ``Wh[:, :2H]``, ``Wh.T`` and gradients written into blocks
``dW[:, 2H:]`` go without copies; ``beta = 1`` adds the product to ``out``.
Only operands with neither stride 1 (rare) are copied first.
"""
import numpy

from common.errors import BackendError

#: Bytes of the cuBLAS workspace: 32 MiB, NVIDIA's advice for Hopper.
WORKSPACE_BYTES = 32 << 20

_ROUTINES = {numpy.dtype(numpy.float32): 'sgemm', numpy.dtype(numpy.float64): 'dgemm'}


def load_cublas():
    """nvmath-python's cuBLAS bindings, or a one-line BackendError with the fix."""
    try:
        from nvmath.bindings import cublas
    except ImportError as exc:
        raise BackendError(f"the CUDA graph path needs nvmath-python for its matrix products ({exc}): "
                           f"pip install nvmath-python (or pip install -e '.[gpu]')") from None
    return cublas


def column_major(x):
    """How cuBLAS sees the 2-D array ``x``: ``(transposed, ld)``. A row-major
    block (unit column stride) is its transpose stored column-major
    (``transposed=True``); a column-major one (unit row stride) is itself.
    None when neither stride is 1."""
    rows, cols = x.shape
    s0, s1 = (s // x.itemsize for s in x.strides)
    if s1 == 1 or cols == 1:
        if s0 < 0 or (rows > 1 and s0 < cols):
            return None
        return True, max(s0, cols, 1)
    if s0 == 1 or rows == 1:
        if s1 < 0 or (cols > 1 and s1 < rows):
            return None
        return False, max(s1, rows, 1)
    return None


class Gemm:
    """``gemm(a, b, out=None, beta=0)``: ``out = a @ b + beta · out`` for 2-D
    CuPy arrays of float32 or float64, by cuBLAS on its own handle (see the
    module docstring). ``out`` may be any 2-D block with a unit stride; it is
    allocated C-contiguous when None. Works eagerly and during stream capture.
    ``calls`` counts the products."""

    def __init__(self, cupy, cublas=None, tf32=False, workspace_bytes=WORKSPACE_BYTES):
        self.cp = cupy
        self.blas = load_cublas() if cublas is None else cublas
        self.handle = self.blas.create()
        self.blas.set_pointer_mode(self.handle, self.blas.PointerMode.HOST)
        if tf32:
            self.blas.set_math_mode(self.handle, self.blas.Math.TF32_TENSOR_OP_MATH)
        self.tf32 = bool(tf32)
        self.workspace = cupy.empty(workspace_bytes, dtype=numpy.uint8)
        self.stream = None
        # alpha = 1, beta = 0 or 1, per dtype, at addresses that stay valid
        self.scalars = {dt: numpy.array([1.0, 0.0, 1.0], dtype=dt) for dt in _ROUTINES}
        self.calls = 0

    def _bind_stream(self):
        stream = self.cp.cuda.get_current_stream().ptr
        if stream != self.stream:
            self.blas.set_stream(self.handle, stream)
            self.blas.set_workspace(self.handle, self.workspace.data.ptr, self.workspace.nbytes)
            self.stream = stream

    def _operand(self, x):
        layout = column_major(x)
        if layout is None:
            x = self.cp.ascontiguousarray(x)
            layout = column_major(x)
        return x, layout

    def __call__(self, a, b, out=None, beta=0):
        (m, k), (k2, n) = a.shape, b.shape
        if k != k2:
            raise ValueError(f'gemm: shapes {a.shape} and {b.shape} do not multiply')
        dtype = numpy.dtype(a.dtype)
        routine = _ROUTINES.get(dtype)
        if routine is None or b.dtype != dtype or (out is not None and out.dtype != dtype):
            raise TypeError(f'gemm: float32 or float64 operands of one dtype only, got {a.dtype}, {b.dtype}'
                            f'{"" if out is None else ", out " + str(out.dtype)}')
        if out is None:
            if beta:
                raise ValueError('gemm: beta = 1 adds to out, so out is needed')
            out = self.cp.empty((m, n), dtype=dtype)
        if out.shape != (m, n):
            raise ValueError(f'gemm: out has shape {out.shape}, the product {(m, n)}')
        if m == 0 or n == 0:
            return out
        layout = column_major(out)
        if layout is None:
            raise ValueError('gemm: out needs a unit stride (a row-major or column-major block)')
        a, (a_t, lda) = self._operand(a)
        b, (b_t, ldb) = self._operand(b)
        self._bind_stream()
        scalars = self.scalars[dtype]
        alpha = scalars.ctypes.data
        beta_ptr = alpha + scalars.itemsize * (2 if beta else 1)
        op = self.blas.Operation
        out_t, ldc = layout
        if out_t:   # out row-major: outᵀ (n x m) = bᵀ aᵀ; a row-major operand is already its transpose
            args = (op.N if b_t else op.T, op.N if a_t else op.T, n, m, k,
                    alpha, b.data.ptr, ldb, a.data.ptr, lda)
        else:       # out column-major: out (m x n) = a b; a row-major operand is its transpose
            args = (op.T if a_t else op.N, op.T if b_t else op.N, m, n, k,
                    alpha, a.data.ptr, lda, b.data.ptr, ldb)
        getattr(self.blas, routine)(self.handle, *args, beta_ptr, out.data.ptr, ldc)
        self.calls += 1
        return out

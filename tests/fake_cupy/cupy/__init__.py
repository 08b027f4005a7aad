"""A stand-in for CuPy, for testing the GPU code path on machines without a GPU.

Arrays live in host memory but behave like device arrays in the ways that
matter for host/device bugs:

* mixing one with a plain NumPy array (arithmetic, ufuncs, functions,
  indexing with host indices, assigning host arrays into it) raises TypeError;
* implicit conversion to NumPy (``numpy.asarray(x)``) raises TypeError, as
  CuPy does; ``x.get()`` and ``cupy.asnumpy(x)`` are the explicit ways;
* reductions return 0-d arrays, not Python scalars;
* the hidden copies CuPy 14 makes are counted in :data:`copies` (reason and
  bytes): a ``matmul`` operand that is neither C- nor F-contiguous, a
  ``matmul`` into an ``out`` that is not C-contiguous (CuPy multiplies into a
  temporary and copies it over), and an input of a ufunc or
  ``ElementwiseKernel`` whose memory bounds overlap an output's (CuPy copies
  the input first: ``_copy_in_args_if_needed`` with ``may_share_bounds``);
* an ``ElementwiseKernel`` refuses ``T`` arguments of different dtypes, as
  CuPy does (``TypeError: Type is mismatched``).

Everything else is delegated to NumPy, so results are bit-identical to the
NumPy backend with the same seeds.
"""
import os as _os

import numpy as _np

__version__ = '0.0-fake'
_IMPLICIT = ('Implicit conversion to a NumPy array is not allowed. '
             'Please use `.get()` to construct a NumPy array explicitly.')


#: (reason, bytes) of every hidden copy CuPy would make; tests reset and read it.
copies = []


def _bounds(a):
    """[low, high) byte addresses that ``a`` may touch (CuPy's get_bound)."""
    low = high = a.__array_interface__['data'][0]
    for n, st in zip(a.shape, a.strides):
        if n == 0:
            return low, low
        if st < 0:
            low += (n - 1) * st
        else:
            high += (n - 1) * st
    return low, high + a.itemsize


def _may_share_bounds(a, b):
    if a is b or a.size == 0 or b.size == 0:
        return False
    (al, ah), (bl, bh) = _bounds(a), _bounds(b)
    return not (ah <= bl or bh <= al)


def _count_overlap(name, inputs, outputs):
    for x in inputs:
        if isinstance(x, _np.ndarray) and any(_may_share_bounds(x, o) for o in outputs
                                              if isinstance(o, _np.ndarray) and o is not x):
            copies.append((f'{name}: input overlaps an output', x.nbytes))


def _count_matmul(a, b, out=None):
    if _os.environ.get('FAKE_CUPY_NO_CUBLAS'):   # a machine with the driver but without cuBLAS
        raise ImportError('CuPy failed to load libcublas.so.12: OSError: libcublas.so.12: '
                          'cannot open shared object file: No such file or directory')
    for x in (a, b):
        if isinstance(x, _np.ndarray) and x.ndim == 2 and not (x.flags.c_contiguous or x.flags.f_contiguous):
            copies.append(('matmul: non-contiguous operand', x.nbytes))
    if isinstance(out, _np.ndarray) and not out.flags.c_contiguous:
        copies.append(('matmul: out not C-contiguous', out.nbytes))


def _unwrap(x, what='argument'):
    """NumPy view of a fake device array; refuse host arrays."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        raise TypeError(f'fake cupy: a host numpy.ndarray was passed as {what} where a device array '
                        f'is needed (shape {x.shape}); transfer it with cupy.asarray first')
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, what) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, what) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, _np.ndarray):
        return ndarray(x)
    if isinstance(x, _np.generic):
        return ndarray(_np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _call(fn, args, kwargs, what='argument'):
    return _wrap(fn(*_unwrap(args, what), **_unwrap(kwargs, what)))


class ndarray:
    __slots__ = ('_a',)

    def __init__(self, a):
        self._a = a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    @property
    def base(self):
        return None if self._a.base is None else ndarray(self._a.base)

    def get(self):
        return self._a.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == '__call__':
            raw = _unwrap(inputs, 'an operand')
            out = _unwrap(kwargs.get('out', ()), 'out')
            out = out if isinstance(out, tuple) else (out,)
            if ufunc is _np.matmul:
                _count_matmul(*raw[:2], out[0] if out else None)
            else:
                _count_overlap(ufunc.__name__, raw, out)
        return _call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, args, kwargs)

    def __matmul__(self, other):
        _count_matmul(self._a, _unwrap(other, 'an operand'))
        return _wrap(self._a @ _unwrap(other, 'an operand'))

    def __rmatmul__(self, other):
        _count_matmul(_unwrap(other, 'an operand'), self._a)
        return _wrap(_unwrap(other, 'an operand') @ self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, 'an index')])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, 'an index')] = _unwrap(value, 'the assigned value')

    def __getattr__(self, name):
        if name.startswith('__'):       # no __array_interface__ & co: no silent host views
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *args, **kwargs: _call(attr, args, kwargs)
        return _wrap(attr)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __repr__(self):
        return 'fake_cupy.' + repr(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __index__(self):
        return self._a.__index__()

    def __hash__(self):
        return id(self)


def _binary(name):
    def method(self, *args):
        return _wrap(getattr(self._a, name)(*_unwrap(args, 'an operand')))
    return method


def _inplace(name):
    def method(self, other):
        getattr(self._a, name)(_unwrap(other, 'an operand'))
        return self
    return method


for _name in ('add', 'sub', 'mul', 'truediv', 'floordiv', 'mod', 'pow', 'and', 'or', 'xor',
              'lshift', 'rshift'):
    setattr(ndarray, f'__{_name}__', _binary(f'__{_name}__'))
    setattr(ndarray, f'__r{_name}__', _binary(f'__r{_name}__'))
    setattr(ndarray, f'__i{_name}__', _inplace(f'__i{_name}__'))
for _name in ('lt', 'le', 'gt', 'ge', 'eq', 'ne', 'neg', 'pos', 'abs', 'invert'):
    setattr(ndarray, f'__{_name}__', _binary(f'__{_name}__'))


class _Ufunc:
    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__

    def __call__(self, *args, **kwargs):
        raw = _unwrap(args, 'an operand')
        out = _unwrap(kwargs.get('out', ()), 'out')
        out = out if isinstance(out, tuple) else (out,)
        if self._uf is _np.matmul:
            _count_matmul(*raw[:2], out[0] if out else None)
        else:
            _count_overlap(self.__name__, raw, out)
        return _call(self._uf, args, kwargs)

    def __getattr__(self, name):        # reduce, at, outer, ...
        method = getattr(self._uf, name)
        if callable(method):
            return lambda *args, **kwargs: _call(method, args, kwargs)
        return method


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else ndarray(a._a.astype(dtype))
    return ndarray(_np.array(a, dtype=dtype, order=order, copy=True))   # host -> "device" copy


def array(a, dtype=None, copy=True, order='K'):
    if isinstance(a, ndarray):
        return ndarray(_np.array(a._a, dtype=dtype, copy=copy, order=order))
    return ndarray(_np.array(a, dtype=dtype, order=order, copy=True))


def asnumpy(a):
    return a._a.copy() if isinstance(a, ndarray) else _np.asarray(a)


def get_array_module(*args):
    import sys
    return sys.modules[__name__]


class _MemoryPool:
    def total_bytes(self):
        return 0

    def used_bytes(self):
        return 0


def get_default_memory_pool():
    return _MemoryPool()


def fuse(*args, **kwargs):
    """cupy.fuse compiles a kernel; here the Python function runs as is."""
    if args and callable(args[0]):
        return args[0]
    return lambda f: f


class ElementwiseKernel:
    """Runs a kernel body written in the common subset of CUDA C and Python
    (one assignment per statement, exp/tanh/+-*/) on the NumPy arrays behind
    the fake device arrays: the math and the argument wiring of a fused kernel
    are checked, not its CUDA compilation."""

    def __init__(self, in_params, out_params, operation, name='kernel', **kwargs):
        self.inputs = [p.split()[-1] for p in in_params.split(',')]
        self.outputs = [p.split()[-1] for p in out_params.split(',')]
        self.statements = [s.strip() for s in operation.split(';') if s.strip()]
        self.name = name

    def __call__(self, *args):
        if len(args) == len(self.inputs):       # outputs allocated, as CuPy does
            first = _unwrap(args[0], f'an argument of kernel {self.name}')
            shape = _np.broadcast_shapes(*(_unwrap(a).shape for a in args))
            args = args + tuple(ndarray(_np.empty(shape, dtype=first.dtype)) for _ in self.outputs)
        if len(args) != len(self.inputs) + len(self.outputs):
            raise TypeError(f'{self.name}: expected {len(self.inputs) + len(self.outputs)} arrays, got {len(args)}')
        arrays = [_unwrap(a, f'an argument of kernel {self.name}') for a in args]
        if len({a.dtype for a in arrays if isinstance(a, _np.ndarray)}) > 1:
            raise TypeError(f'Type is mismatched. {self.name}: T arguments of dtypes '
                            f"{sorted({a.dtype.name for a in arrays if isinstance(a, _np.ndarray)})}")
        _count_overlap(self.name, arrays[:len(self.inputs)], arrays[len(self.inputs):])
        shape = _np.broadcast_shapes(*(a.shape for a in arrays))
        for name, a in zip(self.outputs, arrays[len(self.inputs):]):
            if a.shape != shape:
                raise ValueError(f'{self.name}: output {name} has shape {a.shape}, expected {shape}')
        ns = dict(zip(self.inputs + self.outputs, arrays), exp=_np.exp, tanh=_np.tanh)
        with _np.errstate(over='ignore'):
            for statement in self.statements:
                target, expr = (part.strip() for part in statement.split('=', 1))
                if target not in self.outputs:
                    raise SyntaxError(f'{self.name}: {target!r} is not an output parameter')
                ns[target][...] = eval(expr, {'__builtins__': {}}, ns)
                if _os.environ.get('FAKE_CUPY_KERNEL_BUG'):   # a planted bug, for tests of the checks
                    ns[target][...] *= 1.001
        outs = [ndarray(a) for a in arrays[len(self.inputs):]]
        return outs[0] if len(outs) == 1 else tuple(outs)


from cupy import cuda, random  # noqa: E402,F401


def __getattr__(name):
    attr = getattr(_np, name)
    if isinstance(attr, _np.ufunc):
        return _Ufunc(attr)
    if isinstance(attr, type) or not callable(attr):
        return attr                      # dtypes, constants (float32, newaxis, pi)
    return lambda *args, **kwargs: _call(attr, args, kwargs)

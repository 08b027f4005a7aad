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
  CuPy does (``TypeError: Type is mismatched``);
* stream capture (``cupy.cuda.Stream.begin_capture``) records every operation
  into a graph and refuses what CuPy 14 refuses during a capture: cuBLAS
  (``matmul`` & co), host reads and host-to-device copies, operations whose
  output size depends on the data, the legacy ``cupy.random`` functions, work
  on another stream (:mod:`cupy._graph` says how a capture is simulated).

Everything else is delegated to NumPy, so results are bit-identical to the
NumPy backend with the same seeds.
"""
import operator as _operator
import os as _os

import numpy as _np

from cupy import _graph

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


#: What reaches cuBLAS through CuPy (besides ``numpy.linalg``): refused during a capture.
_CUBLAS = frozenset({'matmul', 'dot', 'vdot', 'tensordot', 'inner', 'einsum'})
#: What has an output whose size depends on the data: it synchronises, refused during a capture.
_DATA_DEPENDENT = frozenset({'unique', 'nonzero', 'argwhere', 'flatnonzero'})
#: Methods that read device memory on the host.
_HOST_READS = frozenset({'item', 'tolist', 'tobytes'})


def _refuse_cublas(name):
    if _graph.capturing():
        raise NotImplementedError(f'cupy.{name}: cuBLAS is not supported during stream capture in CuPy 14 '
                                  f'(cupy.matmul & co): use the capturable GEMM')


def _check_capturable(fn, raw_args):
    """Raise what CuPy raises when ``fn`` runs during a capture (nothing outside one)."""
    if not _graph.capturing():
        return
    name = getattr(fn, '__name__', '')
    if (getattr(fn, '__module__', None) or '').startswith('numpy.linalg'):
        _refuse_cublas(f'linalg.{name}')
    if name in _CUBLAS:
        _refuse_cublas(name)
    if name in _DATA_DEPENDENT or (name == 'where' and len(raw_args) == 1):
        _graph.refuse(f'cupy.{name} (its output size depends on the data: it synchronises)')
    if name in _HOST_READS:
        _graph.refuse(f'ndarray.{name} (a device-to-host read)')


def _run(fn, raw_args, raw_kwargs):
    """``fn`` on NumPy arguments, its result wrapped; during a capture also a graph node."""
    _graph.check_stream()
    _check_capturable(fn, raw_args)
    result = _wrap(fn(*raw_args, **raw_kwargs))
    if _graph.capturing():
        owner = getattr(fn, '__self__', None)          # a method's array
        inputs = _graph.leaves([raw_args, list(raw_kwargs.values()), owner])
        _graph.record(_graph.Node(lambda: fn(*raw_args, **raw_kwargs), _graph.leaves(_unwrap(result)), inputs))
    return result


def _call(fn, args, kwargs, what='argument'):
    return _run(fn, _unwrap(args, what), _unwrap(kwargs, what))


def _launch(run):
    """Run a kernel that writes its outputs in place; during a capture also a graph node."""
    _graph.check_stream()
    run()
    _graph.record(_graph.Node(run))


class _DataPointer:
    """``ndarray.data``: ``ptr`` is the address of the first element, as CuPy's MemoryPointer."""
    __slots__ = ('ptr',)

    def __init__(self, ptr):
        self.ptr = ptr


class ndarray:
    __slots__ = ('_a',)

    def __init__(self, a):
        self._a = a
        _graph.register(a)

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    data = property(lambda self: _DataPointer(self._a.__array_interface__['data'][0]))

    @property
    def base(self):
        return None if self._a.base is None else ndarray(self._a.base)

    def get(self, stream=None):
        _graph.refuse('ndarray.get (a device-to-host copy)')
        return self._a.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == '__call__':
            raw = _unwrap(inputs, 'an operand')
            out = _unwrap(kwargs.get('out', ()), 'out')
            out = out if isinstance(out, tuple) else (out,)
            if ufunc is _np.matmul:
                _refuse_cublas('matmul')
                _count_matmul(*raw[:2], out[0] if out else None)
            else:
                _count_overlap(ufunc.__name__, raw, out)
        return _call(ufunc if method == '__call__' else getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, args, kwargs)

    def __matmul__(self, other):
        _refuse_cublas('matmul')
        _count_matmul(self._a, _unwrap(other, 'an operand'))
        return _run(_operator.matmul, (self._a, _unwrap(other, 'an operand')), {})

    def __rmatmul__(self, other):
        _refuse_cublas('matmul')
        _count_matmul(_unwrap(other, 'an operand'), self._a)
        return _run(_operator.matmul, (_unwrap(other, 'an operand'), self._a), {})

    def __getitem__(self, key):
        key = _unwrap(key, 'an index')
        if any(getattr(k, 'dtype', None) == bool for k in (key if isinstance(key, tuple) else (key,))):
            _graph.refuse('boolean-mask indexing (its output size depends on the data: it synchronises)')
        return _run(_operator.getitem, (self._a, key), {})

    def __setitem__(self, key, value):
        _run(_operator.setitem, (self._a, _unwrap(key, 'an index'), _unwrap(value, 'the assigned value')), {})

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
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        _graph.refuse('repr of a device array (a device-to-host read)')
        return 'fake_cupy.' + repr(self._a)

    def __float__(self):
        _graph.refuse('float() of a device array (a device-to-host read)')
        return float(self._a)

    def __int__(self):
        _graph.refuse('int() of a device array (a device-to-host read)')
        return int(self._a)

    def __bool__(self):
        _graph.refuse('bool() of a device array (a device-to-host read)')
        return bool(self._a)

    def __index__(self):
        _graph.refuse('a device array as an index (a device-to-host read)')
        return self._a.__index__()

    def __hash__(self):
        return id(self)


def _binary(name):
    def method(self, *args):
        return _run(getattr(self._a, name), _unwrap(args, 'an operand'), {})
    return method


def _inplace(name):
    def method(self, other):
        _run(getattr(self._a, name), (_unwrap(other, 'an operand'),), {})
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
            _refuse_cublas('matmul')
            _count_matmul(*raw[:2], out[0] if out else None)
        else:
            _count_overlap(self.__name__, raw, out)
        return _call(self._uf, args, kwargs)

    def __getattr__(self, name):        # reduce, at, outer, ...
        method = getattr(self._uf, name)
        if callable(method):
            return lambda *args, **kwargs: _call(method, args, kwargs)
        return method


_HOST_TO_DEVICE = 'cupy.asarray/cupy.array of host data (a synchronous host-to-device copy)'


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else _call(a._a.astype, (dtype,), {})
    _graph.refuse(_HOST_TO_DEVICE)
    return ndarray(_np.array(a, dtype=dtype, order=order, copy=True))   # host -> "device" copy


def array(a, dtype=None, copy=True, order='K'):
    if isinstance(a, ndarray):
        return _call(_np.array, (a,), dict(dtype=dtype, copy=copy, order=order))
    _graph.refuse(_HOST_TO_DEVICE)
    return ndarray(_np.array(a, dtype=dtype, order=order, copy=True))


def asnumpy(a, stream=None):
    if isinstance(a, ndarray):
        _graph.refuse('cupy.asnumpy (a device-to-host copy)')
        return a._a.copy()
    return _np.asarray(a)


def get_array_module(*args):
    import sys
    return sys.modules[__name__]


def get_default_memory_pool():
    return cuda.default_memory_pool


def fuse(*args, **kwargs):
    """cupy.fuse compiles a kernel; here the Python function runs as is."""
    if args and callable(args[0]):
        return args[0]
    return lambda f: f


#: The functions a kernel body may call (CUDA's overloads of the same names).
_KERNEL_FUNCTIONS = dict(exp=_np.exp, tanh=_np.tanh, min=_np.minimum, max=_np.maximum)


def _kernel_arrays(name, args):
    """The NumPy arrays behind a kernel's arguments; ``T`` arguments must agree in dtype."""
    arrays = [_unwrap(a, f'an argument of kernel {name}') for a in args]
    dtypes = {a.dtype for a in arrays if isinstance(a, _np.ndarray)}
    if len(dtypes) > 1:
        raise TypeError(f'Type is mismatched. {name}: T arguments of dtypes {sorted(d.name for d in dtypes)}')
    return arrays


class ElementwiseKernel:
    """Runs a kernel body written in the common subset of CUDA C and Python
    (one assignment per statement, exp/tanh/min/max/+-*/) on the NumPy arrays behind
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
            shape = _np.broadcast_shapes(*(_np.shape(_unwrap(a)) for a in args))
            args = args + tuple(ndarray(_np.empty(shape, dtype=first.dtype)) for _ in self.outputs)
        if len(args) != len(self.inputs) + len(self.outputs):
            raise TypeError(f'{self.name}: expected {len(self.inputs) + len(self.outputs)} arrays, got {len(args)}')
        arrays = _kernel_arrays(self.name, args)
        _count_overlap(self.name, arrays[:len(self.inputs)], arrays[len(self.inputs):])
        shape = _np.broadcast_shapes(*(_np.shape(a) for a in arrays))   # a Python scalar argument: shape ()
        for name, a in zip(self.outputs, arrays[len(self.inputs):]):
            if a.shape != shape:
                raise ValueError(f'{self.name}: output {name} has shape {a.shape}, expected {shape}')
        _launch(lambda: self._body(arrays))
        outs = [ndarray(a) for a in arrays[len(self.inputs):]]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _body(self, arrays):
        ns = dict(zip(self.inputs + self.outputs, arrays), **_KERNEL_FUNCTIONS)
        with _np.errstate(over='ignore'):
            for statement in self.statements:
                target, expr = (part.strip() for part in statement.split('=', 1))
                if target not in self.outputs:
                    raise SyntaxError(f'{self.name}: {target!r} is not an output parameter')
                ns[target][...] = eval(expr, {'__builtins__': {}}, ns)
                if _os.environ.get('FAKE_CUPY_KERNEL_BUG'):   # a planted bug, for tests of the checks
                    ns[target][...] *= 1.001


class ReductionKernel:
    """A sum reduction: ``map_expr`` (a kernel body's expression of the input
    names) summed over ``axis``; only ``reduce_expr='a + b'`` with
    ``post_map_expr='y = a'``. The result has the input's dtype; ``out`` is
    written in place."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity,
                 name='reduce', **kwargs):
        if reduce_expr.replace(' ', '') != 'a+b' or post_map_expr.replace(' ', '') != 'y=a':
            raise NotImplementedError(f'{name}: the stand-in ReductionKernel sums only '
                                      f"(reduce_expr 'a + b', post_map_expr 'y = a')")
        self.inputs = [p.split()[-1] for p in in_params.split(',')]
        self.map_expr = map_expr
        self.name = name

    def __call__(self, *args, axis=None, out=None, keepdims=False):
        if len(args) != len(self.inputs):
            raise TypeError(f'{self.name}: expected {len(self.inputs)} arrays, got {len(args)}')
        arrays = _kernel_arrays(self.name, args)
        dtype = next(a.dtype for a in arrays if isinstance(a, _np.ndarray))
        shape = _np.broadcast_shapes(*(_np.shape(a) for a in arrays))
        reduced = _np.broadcast_to(_np.zeros((), dtype), shape).sum(axis=axis, keepdims=keepdims).shape
        result = ndarray(_np.empty(reduced, dtype)) if out is None else out
        raw = _unwrap(result, 'out')
        if raw.shape != reduced or raw.dtype != dtype:
            raise TypeError(f'Type is mismatched. {self.name}: out is {raw.dtype.name} {raw.shape}, '
                            f'expected {dtype.name} {reduced}')
        _launch(lambda: self._body(arrays, raw, shape, axis, keepdims))
        return result

    def _body(self, arrays, out, shape, axis, keepdims):
        ns = dict(zip(self.inputs, arrays), **_KERNEL_FUNCTIONS)
        with _np.errstate(over='ignore'):
            mapped = _np.broadcast_to(eval(self.map_expr, {'__builtins__': {}}, ns), shape)
            out[...] = mapped.sum(axis=axis, keepdims=keepdims, dtype=out.dtype)


from cupy import cuda, random  # noqa: E402,F401


def __getattr__(name):
    attr = getattr(_np, name)
    if isinstance(attr, _np.ufunc):
        return _Ufunc(attr)
    if isinstance(attr, type) or not callable(attr):
        return attr                      # dtypes, constants (float32, newaxis, pi)
    return lambda *args, **kwargs: _call(attr, args, kwargs)

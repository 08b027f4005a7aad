"""The book's parameter files, read without running the code a pickle may hold.

The book's ``BaseModel.save_params`` writes
``pickle.dump([p.astype(np.float16) for p in params], f)``: one list of float16
NumPy arrays, nothing else. :func:`load` reads exactly that kind of file and
refuses everything else with a one-line :class:`CheckpointError` naming the file.

``pickle.load`` would call whatever a file names, so a file from elsewhere could
run any code (``os.system``, ``builtins.eval``, ...). Here the unpickler resolves
only the few names NumPy itself writes into a pickle of plain arrays, under their
NumPy 1.x and 2.x module paths, each to ``numpy.dtype`` or to a small stand-in
here that checks its arguments before it builds anything:

* ``numpy.core.multiarray._reconstruct`` (``numpy._core...`` in NumPy 2) and
  ``numpy.ndarray``: the empty array that ``ndarray.__setstate__`` fills from
  the file's bytes (protocols 2 to 4); ``numpy.ndarray`` itself becomes a
  marker that only ``_reconstruct`` accepts, nothing that can be called;
* ``numpy.core.numeric._frombuffer`` (``numpy._core...``): an array over the
  file's bytes (protocol 5);
* ``numpy.dtype``: the arrays' element types;
* ``_codecs.encode``, with ``'latin1'`` only, and ``bytes()`` without arguments:
  the bytes of an array, and of an empty one (protocol 2).

Any other name is refused before anything is built. What loads must then be a
non-empty list (or tuple) of NumPy arrays of float16, float32 or float64.
"""
import math
import os
import pickle

import numpy

from common.errors import CheckpointError

#: The first byte of every pickle of protocol 2 or later (the book's files use the default, 4 or 5).
PICKLE_MAGIC = b'\x80'
FLOAT_SIZES = (2, 4, 8)           # float16, float32, float64


class _NdarrayMarker:
    """What ``numpy.ndarray`` resolves to: the first argument ``_reconstruct``
    expects, and nothing that can be called."""
    __slots__ = ()


NDARRAY = _NdarrayMarker()


def _reconstruct(subtype, shape, typecode):
    """NumPy's ``_reconstruct(ndarray, (0,), b'b')``: the empty array that
    ``__setstate__`` then fills from the file. Only that exact call."""
    if subtype is not NDARRAY or tuple(shape) != (0,) or typecode not in (b'b', 'b'):
        raise pickle.UnpicklingError('an array is rebuilt with other arguments than NumPy writes')
    return numpy.ndarray((0,), numpy.int8)


def _frombuffer(buf, dtype, shape, order):
    """NumPy's protocol-5 form: the array over ``buf``, in ``shape`` and ``order``."""
    if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)) or not isinstance(dtype, numpy.dtype) \
            or order not in ('C', 'F') or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise pickle.UnpicklingError('an array is rebuilt with other arguments than NumPy writes')
    if dtype.itemsize * math.prod(shape) != memoryview(buf).nbytes:
        raise pickle.UnpicklingError(f'an array of shape {tuple(shape)} has {memoryview(buf).nbytes} bytes')
    return numpy.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _latin1_bytes(text, encoding):
    """Protocol 2 writes the bytes of an array as ``_codecs.encode(text, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError('_codecs.encode is used with another encoding than latin1')
    return text.encode('latin1')


def _empty_bytes():
    """Protocol 2 writes ``b''`` as ``bytes()``."""
    return b''


ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy.core.numeric', '_frombuffer'): _frombuffer,
    ('numpy._core.numeric', '_frombuffer'): _frombuffer,
    ('numpy', 'ndarray'): NDARRAY,
    ('numpy', 'dtype'): numpy.dtype,
    ('_codecs', 'encode'): _latin1_bytes,
    ('builtins', 'bytes'): _empty_bytes,
    ('__builtin__', 'bytes'): _empty_bytes,        # the name protocol 2 writes for it
}


class Refused(pickle.UnpicklingError):
    """The file names something outside :data:`ALLOWED`."""


class ArraysUnpickler(pickle.Unpickler):
    """An unpickler that can build plain NumPy arrays and nothing else."""

    def find_class(self, module, name):
        try:
            return ALLOWED[module, name]
        except KeyError:
            raise Refused(f'{module}.{name}') from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('the file refers to objects outside itself')


def is_pickle(path):
    """True when ``path`` is a file that starts like a pickle of protocol 2 or later."""
    try:
        with open(path, 'rb') as f:
            return f.read(1) == PICKLE_MAGIC
    except OSError:
        return False


def load(path):
    """The arrays of a parameter file the book's ``save_params`` wrote, as a
    list of host arrays in the file's order (float16 in the book's files).
    Raises :class:`CheckpointError` for a missing, damaged or foreign file,
    for any name outside :data:`ALLOWED` (nothing is called then) and for any
    content but a list of float arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such parameter file: check the path")
    try:
        with open(path, 'rb') as f:
            content = ArraysUnpickler(f, encoding='latin1').load()
    except Refused as exc:
        raise CheckpointError(f"{path} is a pickle that asks for {exc}, which no file of the book's parameters "
                              f"does: refused unread (unpickling it could run code); use a file the book's "
                              f"save_params wrote") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror or exc}): check its permissions") from None
    except Exception as exc:  # noqa: BLE001 -- any failure to parse is a damaged or foreign file
        reason = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
        raise CheckpointError(f"{path} is not a readable pickle of the book's parameters ({reason}): "
                              f"the file is truncated, corrupted or of another kind; use an intact file") from None
    problem = content_problem(content)
    if problem:
        raise CheckpointError(f"{path} holds {problem}, not the list of float arrays the book's save_params "
                              f"writes: use a parameter file of the book's models")
    return list(content)


def content_problem(content):
    """What is wrong with unpickled ``content`` for a parameter file, or ''."""
    if not isinstance(content, (list, tuple)):
        return f"a {type(content).__name__}"
    if not content:
        return "an empty list"
    for i, a in enumerate(content):
        if type(a) is not numpy.ndarray:
            return f"a list whose entry {i} is a {type(a).__name__}"
        if a.dtype.kind != 'f' or a.dtype.itemsize not in FLOAT_SIZES:
            return f"a list whose entry {i} is an array of {a.dtype}"
    return ''

"""Stream capture for the stand-in CuPy: what a real device does, in host memory.

A real device executes nothing while a stream captures: the kernels are only
recorded, and run when the graph is launched. The stand-in has to execute each
operation (Python needs shapes and results to go on), so it executes and
records it, and at the end of the capture undoes what a device would not have
done:

* every buffer that existed before ``begin_capture`` gets its contents back;
* every buffer created during the capture is poisoned (NaN for floats, the
  dtype's maximum for integers): on a device it holds garbage until a launch;
* every random generator drawn from during the capture gets its state back.

A node is a function re-run on the same NumPy buffers at each launch, plus the
buffers it produced at record time that it must refill (an operation that
returned a fresh array writes its new result into the recorded one; one that
wrote in place writes again by itself).

Live buffers are known by a weak registry of the owning NumPy arrays (a view's
``.base`` chain walked to its end) of every fake device array ever made.
"""
import weakref

import numpy as _np

CAPTURE_REFUSES = 'operation not permitted when stream is capturing (cudaErrorStreamCaptureUnsupported)'

#: id(owner) -> owner of every live device buffer.
_live = weakref.WeakValueDictionary()


class _Capture:
    """What one active capture holds: its stream, its nodes and what to undo."""

    def __init__(self, stream):
        self.stream = stream
        self.nodes = []
        self.saved = [(owner, owner.copy()) for owner in _live.values()]
        self.before = {id(owner) for owner, _ in self.saved}
        self.created = []
        self.generators = {}


#: The capture in progress, or None.
active = None


def owner_of(a):
    """The NumPy array that owns ``a``'s memory (``a`` itself when it owns it)."""
    while isinstance(a.base, _np.ndarray):
        a = a.base
    return a


def register(a):
    """Note ``a``'s buffer as a live device buffer (and as new, during a capture)."""
    owner = owner_of(a)
    key = id(owner)
    if key not in _live:
        _live[key] = owner
        if active is not None and key not in active.before:
            active.created.append(weakref.ref(owner))


def find_buffer(ptr, nbytes):
    """The live device buffer holding ``[ptr, ptr + nbytes)``, or None."""
    for owner in list(_live.values()):
        low = owner.__array_interface__['data'][0]
        if low <= ptr and ptr + nbytes <= low + owner.nbytes:
            return owner
    return None


def refuse(what):
    """Raise if a capture is active: ``what`` is not capturable."""
    if active is not None:
        raise RuntimeError(f'{what}: {CAPTURE_REFUSES}')


def check_stream():
    """Raise if a capture is active and the current stream is not the capturing one."""
    if active is not None:
        from cupy import cuda
        current = cuda.get_current_stream()
        if current is not active.stream:
            raise RuntimeError(f'an operation on stream {current.ptr:#x} while stream {active.stream.ptr:#x} '
                               f'captures: {CAPTURE_REFUSES} (the stand-in supports one stream per capture)')


def capturing():
    """Whether the operation being run is to be recorded (after :func:`check_stream`)."""
    return active is not None


def _fresh(outputs, inputs):
    """For each output array: True when it shares no memory with any input."""
    return [not any(_np.may_share_memory(out, x) for x in inputs) for out in outputs]


class Node:
    """One recorded operation: ``run()`` re-executed at each launch."""

    def __init__(self, run, outputs=(), inputs=(), keep=()):
        self.run = run
        self.outputs = list(outputs)
        self.fresh = _fresh(self.outputs, [x for x in inputs if isinstance(x, _np.ndarray)])
        self.keep = keep               # buffers a raw address points into: kept alive with the graph

    def replay(self):
        results = self.run()
        if not any(self.fresh):
            return
        for out, fresh, new in zip(self.outputs, self.fresh, leaves(results)):
            if fresh:
                _np.copyto(out, new, casting='unsafe')


def leaves(x):
    """The NumPy arrays and scalars in a (nested) result, in order."""
    if isinstance(x, (_np.ndarray, _np.generic)):
        return [x]
    if isinstance(x, (tuple, list)):
        return [leaf for v in x for leaf in leaves(v)]
    return []


def record(node):
    """Add ``node`` to the capture in progress (a no-op outside a capture)."""
    if active is not None:
        active.nodes.append(node)


def save_generator(generator):
    """Remember a NumPy generator's state before its first draw in this capture."""
    if active is not None and generator not in active.generators:
        active.generators[generator] = generator.bit_generator.state   # a fresh dict


def begin(stream):
    global active
    if active is not None:
        raise RuntimeError(f'stream {active.stream.ptr:#x} is already capturing: one capture at a time')
    active = _Capture(stream)


def _poison(owner):
    if not owner.flags.writeable:
        return
    if owner.dtype.kind in 'fc':
        owner.fill(_np.nan)
    elif owner.dtype.kind in 'iu':
        owner.fill(_np.iinfo(owner.dtype).max)
    elif owner.dtype.kind == 'b':
        owner.fill(True)


def end(stream):
    """Finish the capture on ``stream``: undo what a device would not have done;
    return the recorded nodes."""
    global active
    if active is None or active.stream is not stream:
        raise RuntimeError(f'stream {stream.ptr:#x} is not capturing')
    capture, active = active, None
    for owner, contents in capture.saved:
        if owner.flags.writeable:
            _np.copyto(owner, contents)
    for ref in capture.created:
        owner = ref()
        if owner is not None:
            _poison(owner)
    for generator, state in capture.generators.items():
        generator.bit_generator.state = state
    return capture.nodes

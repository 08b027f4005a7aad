"""The bits of cupy.cuda the framework touches: the device, streams with
capture into graphs (see :mod:`cupy._graph`), memory pools."""
import contextlib
import itertools
import weakref

import numpy as _np

from cupy import _graph


class runtime:
    @staticmethod
    def getDeviceCount():
        return 1


class Device:
    def __init__(self, device=0):
        self.id = device

    def use(self):
        return self

    def synchronize(self):
        _graph.refuse('Device.synchronize')


def get_device_id():
    return 0


_addresses = itertools.count(0x7f0000001000, 0x100)


class Stream:
    """A stream: ``with stream:`` makes it current; it can capture a graph."""

    #: The default (legacy) stream, current unless another is made so.
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0 if null else next(_addresses)

    def __enter__(self):
        _current.append(self)
        return self

    def __exit__(self, *exc):
        _current.pop()

    def use(self):
        _current[-1] = self
        return self

    def begin_capture(self, mode=None):
        if self.ptr == 0:
            raise RuntimeError('cannot capture on the default (legacy) stream')
        _graph.begin(self)

    def end_capture(self):
        return Graph(_graph.end(self))

    def is_capturing(self):
        return _graph.active is not None and _graph.active.stream is self

    def synchronize(self):
        if self.is_capturing():
            raise RuntimeError(f'Stream.synchronize: {_graph.CAPTURE_REFUSES}')


Stream.null = Stream(null=True)
_current = [Stream.null]


def get_current_stream():
    return _current[-1]


class Graph:
    """A captured graph: ``launch()`` re-runs its nodes, in order, on the buffers
    they were recorded on."""

    def __init__(self, nodes):
        self._nodes = nodes

    def launch(self, stream=None):
        _graph.refuse('Graph.launch')
        for node in self._nodes:
            node.replay()

    def node_count(self):
        """How many nodes the capture recorded (the stand-in's own helper)."""
        return len(self._nodes)


class MemoryPointer:
    """A block from :meth:`MemoryPool.malloc`: ``ptr`` is its address."""

    def __init__(self, size):
        self._buffer = _np.empty(max(size, 1), dtype=_np.uint8)
        _graph.register(self._buffer)
        self.ptr = self._buffer.__array_interface__['data'][0]
        self.size = size


class MemoryPool:
    """CuPy's pool API; NumPy does the allocating, the pool counts live blocks."""

    def __init__(self, allocator=None):
        self._blocks = weakref.WeakSet()

    def malloc(self, size):
        block = MemoryPointer(size)
        self._blocks.add(block)
        return block

    def used_bytes(self):
        return sum(block.size for block in self._blocks)

    def total_bytes(self):
        return self.used_bytes()

    def free_all_blocks(self, stream=None):
        pass


#: What ``cupy.get_default_memory_pool()`` returns.
default_memory_pool = MemoryPool()
_allocator = [None]


def set_allocator(allocator=None):
    _allocator[0] = allocator


def get_allocator():
    return _allocator[0]


@contextlib.contextmanager
def using_allocator(allocator=None):
    previous, _allocator[0] = _allocator[0], allocator
    try:
        yield
    finally:
        _allocator[0] = previous

"""Parameters listed twice: weight tying the way the book writes it.

The framework's models list a tied weight once, with one gradient (see
:class:`ch_gru.rnnlm.Rnnlm`). The book ties by passing ``embed_W.T`` to
``TimeAffine``, so one memory appears twice in ``model.params`` -- as ``W``
and as its transposed view ``W.T`` -- each with a gradient of its own. The
book's trainer merges them before every update by comparing every pair of
parameters. Here the sharing is found once, from where each array's memory
starts and how it is laid out (O(number of parameters), no values compared),
and the model is then treated exactly as the book treats it: one parameter,
one gradient g = g_W + (g_W.T)ᵀ, for clipping, every optimizer and saving.
"""
import numpy


def address(a):
    """Where the first element of ``a`` lives: a host or device pointer."""
    if isinstance(a, numpy.ndarray):
        return a.__array_interface__['data'][0]
    ptr = getattr(getattr(a, 'data', None), 'ptr', None)     # CuPy: a MemoryPointer
    return ptr if ptr is not None else a.ctypes.data           # the test suite's stand-in CuPy


def _layout(a):
    return address(a), a.dtype, tuple(a.shape), tuple(a.strides)


def find_shared(params):
    """For each entry of ``params`` that repeats an earlier one, a pair
    ``(j, (i, transposed))``: ``params[j]`` is ``params[i]`` itself (the same
    memory in the same layout) or, with ``transposed``, its transpose.
    Returns a dict j -> (i, transposed); empty when every array is listed once.
    """
    first = {}          # layout -> index of its first occurrence
    shared = {}
    for j, p in enumerate(params):
        if p.size == 0:
            continue
        ptr, dtype, shape, strides = _layout(p)
        if (ptr, dtype, shape, strides) in first:
            shared[j] = (first[ptr, dtype, shape, strides], False)
        elif p.ndim == 2 and (ptr, dtype, shape[::-1], strides[::-1]) in first:
            shared[j] = (first[ptr, dtype, shape[::-1], strides[::-1]], True)
        else:
            first[ptr, dtype, shape, strides] = j
    return shared


def unique_params(params):
    """``params`` with every repeated array (see :func:`find_shared`) left out."""
    shared = find_shared(params)
    return [p for j, p in enumerate(params) if j not in shared]


def merge_shared_params(model):
    """Make ``model`` list each parameter once, as the book's trainer does
    before each update, but with the sharing found only now.

    Every entry of ``model.params`` that repeats an earlier one (the same
    array, or its transposed view) is dropped from ``model.params`` and
    ``model.grads``, and ``model.backward`` is wrapped so that after each
    backward pass the dropped gradient is added to the kept one
    (transposed back where needed): one parameter, one summed gradient, for
    ``clip_grads``, every optimizer and ``save_params``. A gradient that is
    already a view of the kept one (the framework's way of tying, listed
    twice) is dropped without adding it again. Models that list each
    parameter once (the framework's own) are left untouched, so calling this
    again is harmless. Returns the number of entries merged away.
    """
    params, grads = model.params, model.grads
    shared = find_shared(params)
    if not shared:
        return 0
    additions = []      # (kept gradient, dropped gradient, transposed)
    for j, (i, transposed) in shared.items():
        target, source = grads[i], grads[j]
        view = source.T if transposed else source
        if _layout(view) != _layout(target):     # a gradient of its own: add it after backward
            additions.append((target, source, transposed))
    model.params = [p for j, p in enumerate(params) if j not in shared]
    model.grads = [g for j, g in enumerate(grads) if j not in shared]
    if additions:
        backward = model.backward

        def backward_with_shared_grads(*args, **kwargs):
            dout = backward(*args, **kwargs)
            for target, source, transposed in additions:
                target += source.T if transposed else source
            return dout

        model.backward = backward_with_shared_grads
    return len(shared)

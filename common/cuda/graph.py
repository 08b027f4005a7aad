"""A training step, an evaluation step and a generation step as one CUDA graph each.

On the GPU a book-size iteration is some 780 launches (cuBLAS calls and small
kernels) at ~25 µs of host time each: the device waits for Python. Capturing
the iteration once (CuPy's stream capture) and replaying it costs one launch.
What capture needs, and where each need is met:

* **Products.** CuPy refuses cuBLAS while capturing; :class:`common.cuda.gemm.Gemm`
  multiplies instead, for the eager warm-up steps too, so both compute alike
  (``backend.use_gemm``).
* **Inputs.** A graph reads fixed addresses. The batch is copied into the
  graph's own input arrays before each launch, and the carried hidden state
  lives in fixed arrays per recurrent layer (:func:`bind_states`): the graph
  copies the new state into them at its end; ``reset_state``/``set_state``
  between launches are seen and written into them (zeros or the values).
* **Scalars.** Python values are frozen at capture. The optimizer's step size
  (lr, Adam's corrected lr) is a device scalar the host fills before each
  launch (``optimizer.scalars()`` / ``apply``); the clipping scale is
  computed on the device; the loss and norm are graph outputs, summed after
  the launch. Dropout masks come from the device generator, whose state the
  graph advances: each replay draws new masks.
* **Memory.** Temporaries come from a private pool kept with the graph, so no
  eager array is ever handed memory the graph writes.
* **Warm-up and re-capture.** A batch shape is first run eagerly (kernels
  compiled, optimizer state made), captured at its second use, replayed from
  then on; another shape (variable BPTT, sentence groups) gets its own graph,
  up to :data:`MAX_GRAPHS`; shapes beyond run eagerly.
  A graph is dropped and captured again when the arrays it baked in change
  (parameters replaced, a new dropout generator); the settings it bakes in
  (the clipping norm, the optimizer's ``baked`` hyperparameters) are part of
  its key.

Where capture does not apply (an optimizer that keeps Python counters, a
gradient step that reads the host, MPI) the step runs eagerly, said once in
one line. ``--no-cuda-graph`` (``config.CUDA_GRAPH = False``) turns it off.
"""
import weakref

from common import backend
from common.errors import BackendError
from common.np import np
from common.run.progress import write


#: Graphs kept per step kind (each holds its temporaries' memory): shapes seen
#: after that many run eagerly, rather than evicting and capturing again.
MAX_GRAPHS = 32


def graphs_apply(wanted=None):
    """Whether the graph path is on: CuPy, and ``wanted`` (None: ``config.CUDA_GRAPH``)."""
    return backend.GPU and bool(backend.config.CUDA_GRAPH if wanted is None else wanted)


def install_gemm():
    """The capturable GEMM, made once and routed to by ``backend.matmul``
    (TF32 products when ``config.TF32``)."""
    if backend._gemm is None:
        from common.cuda.gemm import Gemm
        backend.use_gemm(Gemm(np, tf32=bool(backend.config.TF32)))
    return backend._gemm


def recurrent_layers(root, depth=4):
    """The stateful layers reachable from ``root`` (a model): objects with
    ``state_buffers`` whose ``stateful`` is true, found through attributes and
    lists, each once."""
    found, seen, todo = [], set(), [(root, 0)]
    while todo:
        obj, d = todo.pop()
        if id(obj) in seen or d > depth:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            todo += [(v, d + 1) for v in obj]
            continue
        if not hasattr(obj, '__dict__') or hasattr(obj, 'shape'):
            continue
        if callable(getattr(obj, 'state_buffers', None)) and getattr(obj, 'stateful', False):
            found.append(obj)
        todo += [(v, d + 1) for v in vars(obj).values()]
    return found


def bind_states(model, n_rows):
    """``[(layer, name, buffer)]``: fixed arrays for the carried state of every
    stateful layer, holding the state it carries now (zeros when none or of
    another batch size), and bound to the layer."""
    bound = []
    for layer in recurrent_layers(model):
        for name, buf in layer.state_buffers(n_rows).items():
            bound.append((layer, name, buf))
    sync_states(bound)
    return bound


def sync_states(bound):
    """Bring the fixed state arrays up to date with the layers' attributes:
    what ``reset_state`` or ``set_state`` put there since the last launch."""
    for layer, name, buf in bound:
        state = getattr(layer, name)
        if state is buf:
            continue
        if state is None or state.shape != buf.shape:
            buf.fill(0)
        else:
            buf[...] = state
        setattr(layer, name, buf)


def fingerprint(*owners):
    """The identities of the arrays a capture bakes in: every array attribute
    (or list of arrays) of ``owners``, the dropout generator. A launch is safe
    while it is unchanged."""
    ids = []
    for owner in owners:
        values = owner if isinstance(owner, list) else [v for k, v in sorted(vars(owner).items())
                                                         if not k.startswith('__')]
        for v in values:
            if hasattr(v, 'shape'):
                ids.append(id(v))
            elif isinstance(v, list) and v and hasattr(v[0], 'shape'):
                ids.extend(id(a) for a in v)
    return tuple(ids) + (id(backend._rng),)


class Captured:
    """One graph: its input arrays, its state arrays, its outputs (a dict of
    device arrays it writes), the pool its temporaries live in."""

    def __init__(self, graph, pool, stream, inputs, states, outputs, keep, key):
        self.graph, self.pool, self.stream = graph, pool, stream
        self.inputs, self.states, self.outputs = inputs, states, outputs
        self.keep, self.key = keep, key          # the arrays baked in, alive; their fingerprint

    def launch(self, *arrays):
        for buf, x in zip(self.inputs, arrays):
            buf[...] = x
        sync_states(self.states)
        self.graph.launch()

    def node_count(self):
        """Nodes in the graph (the stand-in's count, or the driver's through cuda-bindings)."""
        count = getattr(self.graph, 'node_count', None)
        if count is not None:
            return count()
        try:
            from cuda.bindings import runtime
            err, _, n = runtime.cudaGraphGetNodes(self.graph.graph, 0)
            return int(n) if int(err) == 0 else None
        except Exception:   # no cuda-bindings, another CuPy layout: the count is optional
            return None


def capture(fn, inputs, model, key, keep):
    """Capture ``fn(*buffers)`` (returning a dict of outputs) on a fresh
    stream into a graph; ``inputs`` give the buffers' shapes and dtypes. The
    carried states are bound first and written back at the end of the graph.
    On an error the states are restored and the error raised."""
    buffers = [x.copy() for x in inputs]
    states = bind_states(model, inputs[0].shape[0])
    pool, stream = np.cuda.MemoryPool(), np.cuda.Stream(non_blocking=True)
    try:
        with np.cuda.using_allocator(pool.malloc), stream:
            stream.begin_capture()
            try:
                outputs = fn(*buffers)
                for layer, name, buf in states:
                    if getattr(layer, name) is not buf:
                        buf[...] = getattr(layer, name)
            except BaseException:
                _end_quietly(stream)
                raise
            graph = stream.end_capture()
    finally:                        # the layers carry their fixed state arrays, captured or not
        for layer, name, buf in states:
            setattr(layer, name, buf)
    return Captured(graph, pool, stream, buffers, states, outputs, keep, key)


def _end_quietly(stream):
    try:
        stream.end_capture()
    except Exception:   # an invalidated capture says so when ended: already being handled
        pass


def refusal(exc):
    """One line for why a capture failed."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
    return f'{type(exc).__name__}: {first}' if first else type(exc).__name__


class Graphs:
    """Captured graphs keyed by batch shape (and whether the update is in
    the graph), the warm-up bookkeeping, and the one-line note when the path
    turns itself off."""

    def __init__(self, what):
        self.what = what
        self.graphs, self.warm = {}, set()
        self.off = None
        self.captures = 0
        try:
            install_gemm()
        except BackendError as exc:       # no nvmath-python: the eager path, said once
            self.turn_off(str(exc))

    def lookup(self, key, fp):
        """The graph for ``key`` if it may run now; None while ``key`` is warming up
        (then it is warm) or the path is off."""
        if self.off is not None:
            return None
        graph = self.graphs.get(key)
        if graph is not None and graph.key == fp:
            return graph
        self.graphs.pop(key, None)
        if key not in self.warm:
            self.warm.add(key)
            return None
        if len(self.graphs) >= MAX_GRAPHS:
            return None         # full: further shapes run eagerly
        return False            # capture now

    def add(self, key, fn, inputs, model, fp, keep):
        """Capture ``fn`` (see :func:`capture`) as the graph of ``key``; on a
        refusal turn the path off (one note) and return None."""
        try:
            graph = capture(fn, inputs, model, fp, keep)
        except Exception as exc:
            self.turn_off(refusal(exc))
            return None
        self.graphs[key] = graph
        self.captures += 1
        return graph

    def turn_off(self, reason):
        self.off = reason
        self.graphs.clear()
        write(f'note: CUDA graphs off for {self.what} ({reason}); running eagerly '
              f'(--no-cuda-graph runs so without this note)')


def settings_of(steps):
    """What a capture bakes in of the gradient steps: each one's class and
    plain settings (e.g. ClipGrads' max_norm)."""
    return tuple((type(step).__name__,) + tuple(sorted((k, v) for k, v in vars(step).items()
                                                       if isinstance(v, (bool, int, float, str, type(None)))))
                 for step in steps)


def why_not_train(trainer, grad_steps):
    """None when the training step can be captured, else the reason (one line)."""
    if backend.config.DETERMINISTIC:
        return 'DLFS_DETERMINISTIC sums the embedding gradient with a host-sized unique'
    for step in grad_steps:
        if not getattr(step, 'capturable', False):
            return f'the gradient step {type(step).__name__} runs on the host'
    return None


class TrainGraphs(Graphs):
    """The training step of a trainer as graphs (see the module docstring).
    ``step`` is the trainer's forward, backward, gradient steps and update."""

    def __init__(self):
        super().__init__('training')
        self.pending = None       # the graph whose scalars trainer.update() fills now

    def step(self, trainer, x, t, grad_steps):
        optimizer = trainer.optimizer
        with_update = bool(getattr(optimizer, 'capturable', False))
        key = (x.shape, t.shape, with_update, settings_of(grad_steps),
               tuple(getattr(optimizer, name) for name in getattr(optimizer, 'baked', ())))
        fp = fingerprint(trainer.model.params, trainer.model.grads, optimizer)
        graph = self.lookup(key, fp)
        if graph is False:
            reason = why_not_train(trainer, grad_steps)
            graph = None if reason else self._capture(trainer, key, fp, x, t, grad_steps, with_update)
            if reason:
                self.turn_off(reason)
        if not graph:
            return trainer.eager_step(x, t, grad_steps)
        if with_update:
            self.pending = graph
            try:
                trainer.update()          # fills the graph's step-size scalars
            finally:
                self.pending = None
        graph.launch(x, t)
        if not with_update:
            trainer.update()
        trainer.norm = graph.outputs['norm']
        return graph.outputs['loss'].copy()

    def load_scalars(self, values):
        """Called by the trainer's update while a graph with the update is next."""
        for name, value in values.items():
            self.pending.outputs['scalars'][name].fill(value)

    def _capture(self, trainer, key, fp, x, t, grad_steps, with_update):
        model, optimizer = trainer.model, trainer.optimizer
        dtype = model.params[0].dtype if model.params else x.dtype
        scalars = {name: np.zeros((), dtype=dtype) for name in getattr(optimizer, 'scalar_names', ())}

        def body(bx, bt):
            trainer.norm = None
            loss = model.forward(bx, bt)
            model.backward()
            for step in grad_steps:
                step(trainer)
            if with_update:
                optimizer.apply(model.params, model.grads, **scalars)
            return {'loss': loss, 'norm': trainer.norm, 'scalars': scalars}
        return self.add(key, body, (x, t), model, fp, (model.params, model.grads, optimizer))


_FORWARDS = weakref.WeakKeyDictionary()     # model -> {what: ForwardGraphs}


def _forwards(model, what, call):
    graphs = _FORWARDS.setdefault(model, {})
    if what not in graphs:
        graphs[what] = ForwardGraphs(what, call)
    return graphs[what]


def eval_forward(model, kwargs):
    """``forward(xs, ts) -> loss`` for evaluation: ``model.forward`` run
    eagerly, or through graphs of the model's forward pass when the graph
    path is on."""
    if not graphs_apply():
        return lambda xs, ts: model.forward(xs, ts, **kwargs)
    graphs = _forwards(model, f'evaluation {sorted(kwargs.items())}', lambda m, xs, ts: m.forward(xs, ts, **kwargs))
    return lambda xs, ts: graphs.run(model, xs, ts)


def predict_forward(model):
    """``predict(xs) -> scores`` for generation: ``model.predict`` eagerly, or
    through graphs of it (one per input shape: the prime, then T = 1) when
    the graph path is on."""
    if not graphs_apply():
        return model.predict
    graphs = _forwards(model, 'generation', lambda m, xs: m.predict(xs))
    return lambda xs: graphs.run(model, xs)


class ForwardGraphs(Graphs):
    """A forward pass without gradients (evaluation, generation) as graphs:
    ``call(model, *inputs)`` returns the one array the caller gets, a copy of
    the graph's output at each launch."""

    def __init__(self, what, call):
        super().__init__(what)
        self.call = call

    def run(self, model, *inputs):
        key = tuple(x.shape for x in inputs)
        fp = fingerprint(model.params)
        graph = self.lookup(key, fp)
        if graph is False:
            graph = self.add(key, lambda *bufs: {'out': self.call(model, *bufs)}, inputs, model, fp, (model.params,))
        if not graph:
            return self.call(model, *inputs)
        graph.launch(*inputs)
        return graph.outputs['out'].copy()

"""Training checkpoints: everything a run needs to go on exactly where it stopped.

A checkpoint is one ``.npz`` archive written atomically by
:func:`common.run.fileio.save_npz` and read with ``allow_pickle=False`` (loading
one never runs code). Its arrays:

* ``param_000`` ...   the model's parameters (``BaseModel.params_to_host``);
* ``best_000`` ...    the parameters with the best validation perplexity;
* ``optim_<name>_000`` ... (or ``optim_<name>``)  the optimizer's slot arrays
  (Momentum ``v``, AdaGrad ``h``, Adam ``m`` and ``v``);
* ``hidden_<layer>_<h|c>``  the carried state of each stateful layer
  (``model.rnn_layers``), present when saved in the middle of an epoch.

Its JSON metadata: ``format`` (``dlfs-checkpoint-1``); ``model`` (the
parameter metadata: class, options, shapes, vocabulary); ``optimizer`` (class,
scalar attributes such as ``lr`` and Adam's ``iter``, which slots are there);
``state`` (epochs done, iterations done in the next epoch and their summed
loss, best validation perplexity, history, divergences in a row, elapsed
seconds); ``data`` (training tokens, their CRC-32, batch and time size);
``rng`` (:func:`common.backend.get_rng_state`); ``options`` (the run's
command-line options); ``settings`` (its :class:`common.run.settings.TrainSettings`).

Like :mod:`common.run.cli`, this module does not import ``common.np`` at import
time: a script reads the options of a checkpoint before choosing the backend.

:class:`Checkpoints` is a run's use of them: save at every epoch end and on
Ctrl-C, resume from one.
"""
import copy
import zlib
from collections import namedtuple
from dataclasses import asdict, dataclass, field

import numpy

from common.errors import CheckpointError, UserError
from common.run.fileio import load_npz, save_npz

FORMAT = 'dlfs-checkpoint-1'
#: Attributes of the stateful layers that carry state between batches.
STATE_ATTRS = ('h', 'c')


@dataclass
class TrainingState:
    """Where a run stands; plain numbers and lists (saved as JSON)."""
    epoch: int = 0                 # epochs completed
    iteration: int = 0             # iterations done in epoch ``epoch + 1``
    epoch_loss: float = 0.0        # the sum of their losses
    best_valid_ppl: float = None
    history: dict = field(default_factory=lambda: {'epoch': [], 'train': [], 'valid': [], 'lr': []})
    divergences: int = 0           # non-finite epochs in a row
    elapsed_s: float = 0.0

    def copy(self):
        return copy.deepcopy(self)


# -- optimizer, hidden states, in-memory snapshots ------------------------------

def optimizer_state(optimizer, convert):
    """The optimizer's public attributes: numbers, strings, None and lists of
    numbers as they are; arrays and lists of arrays (its slots) passed through ``convert``
    (a device copy for a snapshot, a host copy for a file). Attributes
    starting with '_' are taken to be caches and left out."""
    values, slots = {}, {}
    for name, value in vars(optimizer).items():
        if name.startswith('_'):
            continue
        if value is None or isinstance(value, (bool, int, float, str)):
            values[name] = value
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            values[name] = list(value)          # e.g. ASGD's validation checks
        elif isinstance(value, numpy.generic):
            values[name] = value.item()
        elif hasattr(value, 'shape'):
            slots[name] = convert(value)
        elif isinstance(value, (list, tuple)) and all(hasattr(v, 'shape') for v in value):
            slots[name] = [convert(v) for v in value]
        else:
            raise TypeError(f"cannot checkpoint {type(optimizer).__name__}.{name} of type {type(value).__name__}")
    return {'class': type(optimizer).__name__, 'values': values, 'slots': slots}


def set_optimizer_state(optimizer, state, source='the checkpoint'):
    """Restore what :func:`optimizer_state` returned; arrays are copied into
    the optimizer's own arrays where those have the same shapes."""
    from common import backend
    if state['class'] != type(optimizer).__name__:
        raise CheckpointError(f"{source} was written with the {state['class']} optimizer but this run uses "
                              f"{type(optimizer).__name__}: resume with the optimizer it was saved with")
    for name, value in state['values'].items():
        setattr(optimizer, name, list(value) if isinstance(value, list) else value)
    for name, value in state['slots'].items():
        current = getattr(optimizer, name, None)
        if isinstance(value, list):
            if isinstance(current, list) and [c.shape for c in current] == [v.shape for v in value]:
                for c, v in zip(current, value):
                    c[...] = backend.asarray(v)
            else:
                setattr(optimizer, name, [backend.asarray(v).copy() for v in value])
        elif current is not None and getattr(current, 'shape', None) == value.shape:
            current[...] = backend.asarray(value)
        else:
            setattr(optimizer, name, backend.asarray(value).copy())


def stateful_layers(model):
    return list(getattr(model, 'rnn_layers', ()))


def hidden_states(model, convert):
    """[{attr: converted array}] for each stateful layer; None states left out."""
    return [{a: convert(getattr(layer, a)) for a in STATE_ATTRS if getattr(layer, a, None) is not None}
            for layer in stateful_layers(model)]


def set_hidden_states(model, states, rows=slice(None)):
    """Put ``states`` (as :func:`hidden_states` returns them) back; ``rows``:
    the block of the batch's rows this process trains (data-parallel)."""
    from common import backend
    for layer, saved in zip(stateful_layers(model), states):
        for attr in STATE_ATTRS:
            if hasattr(layer, attr):
                value = saved.get(attr)
                setattr(layer, attr, None if value is None else backend.asarray(value[rows]).copy())


def snapshot(model, optimizer):
    """Device copies of the parameters, the optimizer state and the hidden
    states: the last good state to go back to after a divergence."""
    def dev_copy(a):
        return a.copy()
    return {'params': [p.copy() for p in model.params], 'optimizer': optimizer_state(optimizer, dev_copy),
            'hidden': hidden_states(model, dev_copy)}


def restore_snapshot(model, optimizer, snap):
    for p, saved in zip(model.params, snap['params']):
        p[...] = saved
    set_optimizer_state(optimizer, snap['optimizer'])
    set_hidden_states(model, snap['hidden'])


def corpus_fingerprint(corpus):
    """(tokens, CRC-32 of the ids): tells whether a resumed run trains on the same data."""
    from common import backend
    ids = numpy.ascontiguousarray(backend.asnumpy(corpus), dtype=numpy.int64)
    return {'train_tokens': int(ids.size), 'train_crc32': zlib.crc32(ids.tobytes())}


# -- files ----------------------------------------------------------------------

def save_checkpoint(path, model, optimizer, state, best_params=None, vocab=None, options=None, data=None,
                    settings=None, hidden=None):
    """Write a checkpoint of the run atomically (the previous file stays whole
    until the new one is complete). ``hidden``: the hidden states of the
    whole batch when they are not the model's own (a data-parallel run
    gathers every rank's rows)."""
    from common import backend
    host = backend.asnumpy
    arrays = dict(model.params_to_host())
    if best_params is not None:
        arrays.update({f'best_{i:03d}': host(p) for i, p in enumerate(best_params)})
    opt = optimizer_state(optimizer, host)
    slot_kinds = {}
    for name, value in opt['slots'].items():
        if isinstance(value, list):
            arrays.update({f'optim_{name}_{i:03d}': v for i, v in enumerate(value)})
            slot_kinds[name] = len(value)
        else:
            arrays[f'optim_{name}'] = value
            slot_kinds[name] = None
    hidden = hidden_states(model, host) if hidden is None else hidden
    for i, layer in enumerate(hidden):
        arrays.update({f'hidden_{i}_{attr}': value for attr, value in layer.items()})
    meta = {'format': FORMAT, 'model': model.params_meta(vocab),
            'optimizer': {'class': opt['class'], 'values': opt['values'], 'slots': slot_kinds},
            'hidden': [sorted(layer) for layer in hidden], 'has_best': best_params is not None,
            'state': asdict(state), 'data': data or {}, 'rng': backend.get_rng_state(),
            'options': options or {}, 'settings': settings or {}}
    save_npz(path, arrays, meta)
    return path


def load_checkpoint(path):
    """Read a checkpoint; a damaged file or one that is no checkpoint raises
    :class:`CheckpointError` with one line saying so."""
    arrays, meta = load_npz(path, kind='checkpoint')
    if meta.get('format') != FORMAT:
        if meta.get('format', '').startswith('dlfs-params'):
            raise CheckpointError(f"{path} holds model parameters only, not a training checkpoint: resume from "
                                  f"the checkpoint.npz in the run's output directory")
        raise CheckpointError(f"{path} is not a training checkpoint of this framework: resume from the "
                              f"checkpoint.npz in the run's output directory")
    try:
        return Checkpoint(path, arrays, meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is an incomplete checkpoint ({exc.__class__.__name__}: {exc}): "
                              f"use an intact one") from None


class Checkpoint:
    """A loaded checkpoint: ``options``, ``settings``, ``vocab``, ``state``; :meth:`check`
    that it fits a run, then :meth:`restore` it into the model and optimizer."""

    def __init__(self, path, arrays, meta):
        self.path, self.arrays, self.meta = path, arrays, meta
        self.options = dict(meta['options'])
        self.settings = dict(meta.get('settings', {}))
        self.vocab = meta['model'].get('vocab')
        self.state = TrainingState(**meta['state'])

    def check(self, model, optimizer, vocab=None, data=None):
        """Raise :class:`CheckpointError` unless this checkpoint continues a run
        of ``model`` (same class and options), ``vocab`` and training ``data``."""
        saved = self.meta['model']
        mine = type(model).__name__
        if saved.get('model') != mine:
            raise CheckpointError(f"{self.path} holds a {saved.get('model')} but this run trains a {mine}: "
                                  f"resume it with the script that wrote it")
        config = saved.get('config', {})
        diffs = [f"{k} {config.get(k)!r} vs {v!r}" for k, v in model.config.items() if config.get(k) != v]
        if diffs:
            raise CheckpointError(f"{self.path} holds another model ({'; '.join(diffs)}; checkpoint vs this "
                                  f"run): resume with the options it was saved with")
        if vocab is not None and self.vocab is not None and list(vocab) != list(self.vocab):
            raise CheckpointError(f"{self.path} was trained with another vocabulary ({_first_difference(self.vocab, list(vocab))}): "
                                  f"resume with the training data it was saved with")
        if data:
            self._check_data(data)
        if self.meta['optimizer']['class'] != type(optimizer).__name__:
            raise CheckpointError(f"{self.path} was written with the {self.meta['optimizer']['class']} optimizer "
                                  f"but this run uses {type(optimizer).__name__}: resume with the same optimizer")

    def _check_data(self, data):
        saved = self.meta['data']
        keys = ['train_tokens', 'train_crc32']
        if self.state.iteration:          # mid-epoch: the position depends on the batch shape
            keys += ['batch_size', 'time_size']
        diffs = [f"{k} {saved.get(k)} vs {data.get(k)}" for k in keys if saved.get(k) != data.get(k)]
        if diffs:
            raise CheckpointError(f"{self.path} was trained on other data or batches ({'; '.join(diffs)}; "
                                  f"checkpoint vs this run): resume with the data and batch options it was saved with")

    def restore(self, model, optimizer, rows=slice(None)):
        """Load parameters, optimizer state, hidden states (the batch's ``rows``
        of them: a data-parallel rank's block) and the random generators'
        state; returns ``(state, best_params)`` (best_params a list of backend
        arrays, or None)."""
        try:
            return self._restore(model, optimizer, rows)
        except KeyError as exc:
            raise CheckpointError(f"{self.path} is an incomplete checkpoint (no {exc} in it): use an intact one") from None

    def _restore(self, model, optimizer, rows):
        from common import backend
        a, meta = self.arrays, self.meta
        model.set_params_from_host(a, meta['model'], source=self.path)
        best = None
        if meta['has_best']:
            best = [backend.asarray(numpy.asarray(a[f'best_{i:03d}'], dtype=p.dtype))
                    for i, p in enumerate(model.params)]
        slots = {}
        for name, length in meta['optimizer']['slots'].items():
            slots[name] = a[f'optim_{name}'] if length is None else [a[f'optim_{name}_{i:03d}'] for i in range(length)]
        set_optimizer_state(optimizer, {'class': meta['optimizer']['class'], 'values': meta['optimizer']['values'],
                                        'slots': slots}, source=self.path)
        set_hidden_states(model, [{attr: a[f'hidden_{i}_{attr}'] for attr in attrs}
                                  for i, attrs in enumerate(meta['hidden'])], rows)
        backend.set_rng_state(meta['rng'])
        return self.state.copy(), best


def _first_difference(saved, mine):
    if len(saved) != len(mine):
        return f"{len(saved)} words in the checkpoint, {len(mine)} in this run"
    i = next(i for i, (s, m) in enumerate(zip(saved, mine)) if s != m)
    return f"id {i} is {saved[i]!r} in the checkpoint, {mine[i]!r} in this run"


# -- a run's checkpoints --------------------------------------------------------

#: What a run writes beside the parameters: vocabulary, metadata of the saved
#: parameters, options and training-data fingerprint of the checkpoint.
Record = namedtuple('Record', 'vocab save_meta options data')


class Checkpoints:
    """Checkpoint and resume: :meth:`save` writes the run to
    ``settings.checkpoint_path`` (atomically; a failed write warns and
    training goes on), :meth:`resume` puts a checkpoint back into the model
    and optimizer. ``record``: a :data:`Record`; ``comm``: the run's
    communicator (default: one process)."""

    def __init__(self, settings, record, comm=None):
        if comm is None:
            from common.parallel import communicator
            comm = communicator.SingleProcess()
        self.s, self.record, self.path, self.comm = settings, record, settings.checkpoint_path, comm

    def save(self, model, optimizer, state, best_params):
        """Whether the run is saved now (True without a checkpoint path: nothing to save).
        On K processes rank 0 writes the hidden states of every rank's rows."""
        from common import backend
        if not self.path:
            return True
        hidden = self.comm.gather_rows(hidden_states(model, backend.asnumpy))
        if not self.comm.is_root:
            return self.comm.bcast(None)
        r, saved = self.record, True
        try:
            save_checkpoint(self.path, model, optimizer, state, best_params, r.vocab, r.options, r.data,
                            self.s.to_dict(), hidden)
        except (OSError, UserError) as exc:
            print(f'-- warning: could not write the checkpoint {self.path} ({exc}); the previous '
                  f'one is intact and training goes on', flush=True)
            saved = False
        return self.comm.bcast(saved)

    def resume(self, checkpoint, model, optimizer, rows=slice(None)):
        """``(state, best_params)`` of ``checkpoint``, restored into ``model`` and
        ``optimizer`` (the hidden states of the batch's ``rows``); an explicit
        ``resume_lr`` of the settings replaces the saved learning rate."""
        state, best_params = checkpoint.restore(model, optimizer, rows)
        if self.s.resume_lr is not None:
            optimizer.lr = self.s.resume_lr
        return state, best_params

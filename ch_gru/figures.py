"""What the models do inside, as host arrays for the figures
(:mod:`common.run.plotting` draws them; ``scripts/plot_*.py`` wire the two).

* :func:`state_gradient_norms`: ‖∂L/∂h_t‖ for every step t of a window, where
  L is the cross-entropy of the word after the window, predicted from the
  last state h_T (the book's chapter 6: how far back a gradient reaches).
  Exact, from real backward passes through the model's own layers: the
  window is split at t into two stateful calls; the backward pass of the
  second call leaves ``layer.dh``, the gradient with respect to its initial
  state, which is h_t (for an LSTM with c_t held as its own variable:
  ``layer.dc`` is ∂L/∂c_t).
* :func:`gate_activations` / :func:`gates_over_text`: the update gate z and
  the reset gate r of a GRU over a passage, as TimeGRU's forward left them.
* :func:`read_run_log`: the perplexity curve of a run from its ``log.jsonl``.
"""
import math

import numpy

from common.np import *  # noqa: F401,F403
from common import backend
from common.errors import ConfigError, DataError
from common.run.runlog import JsonLog
from common.time_layers import TimeGRU, TimeSoftmaxWithLoss


# -- gradients flowing back through time ------------------------------------------------

def _recurrent(model, xs):
    """xs (N, T) ids through the embedding and the stateful recurrent layers (no dropout):
    the last layer's states (N, T, H)."""
    h = model.embed.forward(xs)
    for layer in model.rnn_layers:
        h = layer.forward(h)
    return h


def _last_step_backward(model, xs, targets):
    """From the state the layers carry: forward xs (N, T'), the mean cross-entropy
    of ``targets`` (N,) predicted from the last step, and its backward pass.
    Returns the loss; each recurrent layer's ``dh`` is then ∂L/∂(its initial state)."""
    hs = _recurrent(model, xs)
    loss_layer = TimeSoftmaxWithLoss()
    loss = loss_layer.forward(model.affine.forward(hs[:, -1:]), targets[:, None])
    dhs = np.zeros_like(hs)
    dhs[:, -1:] = model.affine.backward(loss_layer.backward(1))
    for layer in reversed(model.rnn_layers):
        dhs = layer.backward(dhs)
    return loss


def check_inspectable(model):
    """The model's parts these functions read: an embedding, stateful recurrent layers, an affine layer."""
    if not all(hasattr(model, name) for name in ('embed', 'rnn_layers', 'affine')):
        raise ConfigError(f'{type(model).__name__} is not an Rnnlm: inspect a model of ch_gru.rnnlm '
                          f'(or ch_gru.better_rnnlm)')
    if hasattr(model.embed, 'train_flg'):
        model.embed.train_flg = False          # no words dropped while inspecting


def state_gradient(model, xs, targets, t):
    """∂L/∂h_t of every recurrent layer, each (N, H) on the backend: L is the
    mean over the N rows of the cross-entropy of ``targets`` (N,) predicted
    after the window xs (N, T) ids, h_t the layer's state after the first
    t ids (0 <= t < T; h_0 is the zero state). The model's state is reset."""
    check_inspectable(model)
    xs, targets = backend.asarray(xs), backend.asarray(targets)
    if not 0 <= t < xs.shape[1]:
        raise ConfigError(f'step {t} is outside the window of {xs.shape[1]} steps: give 0 <= t < T')
    model.reset_state()
    if t:
        _recurrent(model, xs[:, :t])           # the first call: the layers carry h_t
    _last_step_backward(model, xs[:, t:], targets)
    model.reset_state()
    return [layer.dh for layer in model.rnn_layers]


def state_gradient_norms(model, xs, targets):
    """{'h': (num_layers, T) host array}: for each step t the mean over the N
    windows of ‖∂L_n/∂h_t‖, the gradient norm of window n's own loss L_n (N
    times its share of the mean loss); for an LSTM also 'c', the same of
    ∂L_n/∂c_t. The states of the first calls are computed once."""
    check_inspectable(model)
    xs, targets = backend.asarray(xs), backend.asarray(targets)
    N, T = xs.shape
    model.reset_state()
    states = [None]
    for t in range(1, T):
        _recurrent(model, xs[:, t - 1:t])
        states.append([tuple(s.copy() for s in layer_state) for layer_state in model.get_state()])
    kinds = ['h', 'c'] if all(hasattr(layer, 'dc') for layer in model.rnn_layers) else ['h']
    norms = {kind: numpy.empty((len(model.rnn_layers), T)) for kind in kinds}
    for t in range(T):
        if states[t] is None:
            model.reset_state()
        else:
            model.set_state(states[t])
        _last_step_backward(model, xs[:, t:], targets)
        for i, layer in enumerate(model.rnn_layers):
            for kind in kinds:
                grad = getattr(layer, 'd' + kind)
                norms[kind][i, t] = float((N * np.sqrt((grad ** 2).sum(axis=1))).mean())
    model.reset_state()
    return norms


def windows(corpus, count, size, seed=0):
    """``count`` windows of ``size`` ids from the 1-D ``corpus`` at random offsets, and the id after
    each: (xs (count, size), targets (count,)) as host int32 arrays."""
    corpus = numpy.asarray(corpus)
    if len(corpus) < size + 1:
        raise DataError(f'the corpus has {len(corpus)} tokens, fewer than a window of {size} and its target: '
                        f'use a shorter window or a longer corpus')
    starts = numpy.random.default_rng(seed).integers(0, len(corpus) - size, size=count)
    xs = numpy.stack([corpus[s:s + size] for s in starts]).astype(numpy.int32)
    return xs, corpus[starts + size].astype(numpy.int32)


def train_briefly(model, corpus, iters, batch_size=20, time_size=35, lr=0.005, max_grad=5.0):
    """``iters`` Adam steps of the book's loop (:class:`common.trainer.RnnlmTrainer`, no output)
    on the start of ``corpus``; the model's state is reset after."""
    from common.optimizer import Adam
    from common.trainer import RnnlmTrainer
    need = iters * batch_size * time_size + 1
    corpus = numpy.asarray(corpus)
    if len(corpus) < need:
        raise DataError(f'{iters} iterations of {batch_size} x {time_size} need {need} tokens, the corpus has '
                        f'{len(corpus)}: train fewer iterations or on a longer corpus')
    corpus = corpus[:need]
    RnnlmTrainer(model, Adam(lr), parts=[]).fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=batch_size,
                                                time_size=time_size, max_grad=max_grad, eval_interval=0)
    model.reset_state()
    return model


# -- gates ---------------------------------------------------------------------------------

def gate_activations(layer):
    """(z, r), each (N, T, H): the update and reset gates of a TimeGRU's last
    forward, read from ``layer.cache[2]`` (the z | r | h̃ activations)."""
    H = layer.params[1].shape[0]
    G = layer.cache[2]
    return G[..., :H], G[..., H:2 * H]


def gates_over_text(model, ids, layer=0):
    """(z, r), host arrays (T, H), of the GRU layer ``layer`` of ``model`` over the
    ids (T,) of one passage, from the zero state (reset before and after)."""
    check_inspectable(model)
    if not 0 <= layer < len(model.rnn_layers):
        raise ConfigError(f'the model has {len(model.rnn_layers)} recurrent layer(s): give a layer index '
                          f'below that')
    if not isinstance(model.rnn_layers[layer], TimeGRU):
        raise ConfigError(f'layer {layer} is a {type(model.rnn_layers[layer]).__name__}, not a TimeGRU: '
                          f'the gates z and r are a GRU\'s; give a GRU model')
    model.reset_state()
    _recurrent(model, backend.asarray(numpy.asarray(ids, dtype=numpy.int32)[None, :]))
    z, r = gate_activations(model.rnn_layers[layer])
    model.reset_state()
    return backend.asnumpy(z[0]), backend.asnumpy(r[0])


def most_varying(gates, count):
    """Indices of the ``count`` units (columns of ``gates`` (T, H)) whose values vary most over the passage,
    in unit order."""
    return numpy.sort(numpy.argsort(gates.std(axis=0))[::-1][:count])


# -- runs -------------------------------------------------------------------------------------

def read_run_log(path):
    """The curve of the run whose ``log.jsonl`` is ``path``: a dict of lists
    ``epoch``, ``seconds`` (training seconds), ``train``, ``valid`` (perplexity)
    and the run's ``recipe`` (None when its start record does not say)."""
    try:
        records = JsonLog.read(path)
    except OSError as exc:
        raise DataError(f'cannot read the run log {path}: {exc.strerror}: give the log.jsonl a training script '
                        f'wrote (or its --out-dir)') from None
    except ValueError:
        raise DataError(f'{path} is not a run log (one JSON record per line): give the log.jsonl a training '
                        f'script wrote') from None
    epochs = [r for r in records if isinstance(r, dict) and r.get('event') == 'epoch']
    if not epochs:
        raise DataError(f'{path} holds no finished epoch: give the log of a run that trained at least one epoch')
    start = next((r for r in records if isinstance(r, dict) and r.get('event') == 'start'), {})
    curve = {'epoch': [], 'seconds': [], 'train': [], 'valid': []}
    for r in epochs:
        if r['epoch'] in curve['epoch']:       # a resumed run repeats an epoch: keep the last
            i = curve['epoch'].index(r['epoch'])
            for key in curve:
                del curve[key][i]
        curve['epoch'].append(r['epoch'])
        curve['seconds'].append(r.get('train_seconds', math.nan))
        curve['train'].append(r['train_ppl'])
        curve['valid'].append(r['valid_ppl'])
    curve['recipe'] = (start.get('args') or {}).get('recipe')
    return curve

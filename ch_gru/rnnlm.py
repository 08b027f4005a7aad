"""Recurrent language models built from the Time layers."""
import numpy

from common.np import *  # noqa: F401,F403
from common import np as backend
from common.base_model import BaseModel
from common.errors import ConfigError
from common.time_layers import (TimeAffine, TimeDropout, TimeEmbedding, TimeGRU, TimeLSTM, TimeRNN,
                                TimeSoftmaxWithLoss)

#: cell name -> (Time layer, number of gate blocks stacked in Wx, Wh and b)
CELLS = {'gru': (TimeGRU, 3), 'lstm': (TimeLSTM, 4), 'rnn': (TimeRNN, 1)}


class Rnnlm(BaseModel):
    """Embedding → Dropout → [recurrent layer → Dropout] × num_layers → Affine → softmax loss.

    xs, ts: (N, T) word ids. ``cell`` is 'gru' (z | r | h̃ blocks), 'lstm'
    (f | g | i | o) or 'rnn'. With ``tie_weights`` the output layer uses the
    embedding matrix transposed (needs wordvec_size == hidden_size): one
    parameter, one gradient, listed once in ``params``/``grads``.
    ``dtype`` is float32 for training, float64 for gradient checks.
    Initial weights come from ``numpy.random`` (seed it for reproducible runs).
    """

    def __init__(self, vocab_size, wordvec_size, hidden_size, num_layers=2, dropout_ratio=0.5,
                 cell='gru', tie_weights=True, dtype='float32'):
        super().__init__()
        V, D, H, L = vocab_size, wordvec_size, hidden_size, num_layers
        check_model_options(V, D, H, L, dropout_ratio, cell, tie_weights, dtype)
        self.config = dict(vocab_size=V, wordvec_size=D, hidden_size=H, num_layers=L,
                           dropout_ratio=dropout_ratio, cell=cell, tie_weights=tie_weights,
                           dtype=numpy.dtype(dtype).name)
        rn = numpy.random.randn
        dt = numpy.dtype(dtype)

        def param(host):
            return backend.asarray(host.astype(dt))

        Layer, gates = CELLS[cell]
        embed_W = param(rn(V, D) / 100)
        self.embed = TimeEmbedding(embed_W)
        self.dropouts = [TimeDropout(dropout_ratio)]
        self.rnn_layers = []
        in_size = D
        for _ in range(L):
            Wx = param(rn(in_size, gates * H) / numpy.sqrt(in_size))
            Wh = param(rn(H, gates * H) / numpy.sqrt(H))
            b = param(numpy.zeros(gates * H))
            self.rnn_layers.append(Layer(Wx, Wh, b, stateful=True))
            self.dropouts.append(TimeDropout(dropout_ratio))
            in_size = H
        affine_b = param(numpy.zeros(V))
        if tie_weights:
            # One parameter, two uses. Backward runs the affine layer first: it
            # writes the full gradient into the transposed view of the
            # embedding's gradient, then the embedding adds its rows to it.
            self.affine = TimeAffine(embed_W.T, affine_b)
            self.affine.grads[0] = self.embed.grads[0].T
            self.embed.accumulate = True
        else:
            self.affine = TimeAffine(param(rn(H, V) / numpy.sqrt(H)), affine_b)
        self.loss_layer = TimeSoftmaxWithLoss()

        self.params, self.grads = list(self.embed.params), list(self.embed.grads)
        for layer in self.rnn_layers:
            self.params += layer.params
            self.grads += layer.grads
        skip = 1 if tie_weights else 0        # the tied weight is already listed
        self.params += self.affine.params[skip:]
        self.grads += self.affine.grads[skip:]

    def predict(self, xs, train_flg=False):
        """Scores (N, T, V) for ids xs (N, T); dropout only when train_flg."""
        for dropout in self.dropouts:
            dropout.train_flg = train_flg
        h = self.dropouts[0].forward(self.embed.forward(xs))
        for layer, dropout in zip(self.rnn_layers, self.dropouts[1:]):
            h = dropout.forward(layer.forward(h))
        return self.affine.forward(h)

    def forward(self, xs, ts, train_flg=True):
        """Mean cross-entropy of predicting ts from xs (a backend scalar)."""
        score = self.predict(xs, train_flg)
        return self.loss_layer.forward(score, ts)

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        dout = self.affine.backward(dout)
        for layer, dropout in zip(reversed(self.rnn_layers), reversed(self.dropouts[1:])):
            dout = layer.backward(dropout.backward(dout))
        self.embed.backward(self.dropouts[0].backward(dout))

    def reset_state(self):
        for layer in self.rnn_layers:
            layer.reset_state()

    def get_state(self):
        """The recurrent layers' carried state: per layer (h,) or, for LSTM, (h, c)."""
        return [(layer.h, layer.c) if hasattr(layer, 'c') else (layer.h,) for layer in self.rnn_layers]

    def set_state(self, state):
        """Restore what :meth:`get_state` returned."""
        for layer, s in zip(self.rnn_layers, state):
            layer.set_state(*s)


def load_model(path, dtype=None):
    """Rebuild the model saved in ``path`` (by ``save_params``) from the options
    stored with it and load its parameters. Returns ``(model, meta)``;
    ``meta['vocab']``, when the file has one, lists the tokens in id order."""
    from common.errors import CheckpointError
    from common.fileio import load_npz
    arrays, meta = load_npz(path, kind='model file')
    config = dict(meta.get('config') or {})
    if not {'vocab_size', 'wordvec_size', 'hidden_size'} <= set(config):
        raise CheckpointError(f"{path} does not say which model it holds (no options in it): "
                              f"use a file written by save_params of this framework")
    if dtype is not None:
        config['dtype'] = dtype
    try:
        model = Rnnlm(**config)
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path} holds options this framework cannot build ({exc}): "
                              f"use a file written by save_params of this framework") from None
    model.set_params_from_host(arrays, meta, source=path)
    return model, meta


def check_model_options(V, D, H, L, dropout_ratio, cell, tie_weights, dtype):
    for name, value in (('vocab_size', V), ('wordvec_size', D), ('hidden_size', H), ('num_layers', L)):
        if not isinstance(value, (int, numpy.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not 0 <= dropout_ratio < 1:
        raise ConfigError(f"dropout_ratio must be in [0, 1), got {dropout_ratio!r}")
    if cell not in CELLS:
        raise ConfigError(f"unknown cell {cell!r}: choose one of {', '.join(CELLS)}")
    if tie_weights and D != H:
        raise ConfigError(f"weight tying needs wordvec_size == hidden_size (got {D} and {H}): "
                          f"make them equal or turn tying off")
    if numpy.dtype(dtype) not in (numpy.float32, numpy.float64):
        raise ConfigError(f"dtype must be float32 or float64, got {dtype!r}")

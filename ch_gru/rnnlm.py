"""Recurrent language models built from the Time layers."""
import numpy

from common.np import *  # noqa: F401,F403
from common import backend
from common.base_model import BaseModel
from common.errors import ConfigError
from common.regularisation import ActivationRegularisation, EmbeddingDropout, LockedDropout, WeightDrop
from common.time_layers import (TimeAffine, TimeDropout, TimeEmbedding, TimeGRU, TimeLSTM, TimeRNN,
                                TimeSoftmaxWithLoss)

#: cell name -> (Time layer, number of gate blocks stacked in Wx, Wh and b)
CELLS = {'gru': (TimeGRU, 3), 'lstm': (TimeLSTM, 4), 'rnn': (TimeRNN, 1)}

#: The regularisation options (common/regularisation.py) and their book values: off.
REGULARISATION = dict(locked_dropout=False, dropout_input=None, dropout_hidden=None, dropout_output=None,
                      embed_dropout=0.0, weight_drop=0.0, ar_alpha=0.0, tar_beta=0.0)


class Rnnlm(BaseModel):
    """Embedding → Dropout → [recurrent layer → Dropout] × num_layers → Affine → softmax loss.

    xs, ts: (N, T) word ids. ``cell`` is 'gru' (z | r | h̃ blocks), 'lstm'
    (f | g | i | o) or 'rnn'. With ``tie_weights`` the output layer uses the
    embedding matrix transposed (needs wordvec_size == hidden_size): one
    parameter, one gradient, listed once in ``params``/``grads``.
    ``dtype`` is float32 for training, float64 for gradient checks.
    Initial weights come from ``numpy.random`` (seed it for reproducible runs).

    The AWD-LSTM regularisers (:mod:`common.regularisation`), all off by
    default (the book's model), work with every cell:

    * ``locked_dropout``: the dropouts are :class:`LockedDropout` (one mask
      per sequence) instead of :class:`TimeDropout`; ``dropout_input``
      (embedding output), ``dropout_hidden`` (between layers) and
      ``dropout_output`` (last layer's output) set their ratios, each
      ``dropout_ratio`` when None;
    * ``embed_dropout``: words dropped from the embedding (:class:`EmbeddingDropout`);
    * ``weight_drop``: DropConnect on every Wh (:class:`WeightDrop`);
    * ``ar_alpha``, ``tar_beta``: AR and TAR on the last layer's outputs
      (:class:`ActivationRegularisation`), added to the training loss.

    ``reset_after=True`` (GRU only) builds PyTorch's form of the GRU, the
    reset gate after the recurrent product and a recurrent bias per layer
    (:class:`common.time_layers.TimeGRU`); such a model converts to and from
    PyTorch (:mod:`ch_gru.torch_interop`).

    ``config`` lists the options that differ from the book's.
    """

    def __init__(self, vocab_size, wordvec_size, hidden_size, num_layers=2, dropout_ratio=0.5,
                 cell='gru', tie_weights=True, dtype='float32', reset_after=False, **regularisation):
        super().__init__()
        V, D, H, L = vocab_size, wordvec_size, hidden_size, num_layers
        check_model_options(V, D, H, L, dropout_ratio, cell, tie_weights, dtype)
        if reset_after and cell != 'gru':
            raise ConfigError(f"reset_after is an option of the GRU, not of cell {cell!r}: "
                              f"use cell='gru' or leave reset_after off")
        reg = check_regularisation(regularisation)
        self.config = dict(vocab_size=V, wordvec_size=D, hidden_size=H, num_layers=L,
                           dropout_ratio=dropout_ratio, cell=cell, tie_weights=tie_weights,
                           dtype=numpy.dtype(dtype).name)
        if reset_after:
            self.config['reset_after'] = True
        self.config.update({k: v for k, v in reg.items() if v != REGULARISATION[k]})
        rn = numpy.random.randn
        dt = numpy.dtype(dtype)

        def param(host):
            return backend.asarray(host.astype(dt))

        Layer, gates = CELLS[cell]
        options = dict(reset_after=True) if reset_after else {}
        embed_W = param(rn(V, D) / 100)
        self.embed = EmbeddingDropout(embed_W, reg['embed_dropout']) if reg['embed_dropout'] else TimeEmbedding(embed_W)
        Dropout = LockedDropout if reg['locked_dropout'] else TimeDropout
        ratios = [reg['dropout_input']] + [reg['dropout_hidden']] * (L - 1) + [reg['dropout_output']]
        self.dropouts = [Dropout(dropout_ratio if r is None else r) for r in ratios]
        self.rnn_layers = []
        in_size = D
        for _ in range(L):
            Wx = param(rn(in_size, gates * H) / numpy.sqrt(in_size))
            Wh = param(rn(H, gates * H) / numpy.sqrt(H))
            b = param(numpy.zeros(gates * H))
            self.rnn_layers.append(Layer(Wx, Wh, b, stateful=True, **options))
            in_size = H
        # The layers forward runs: each recurrent layer, or its weight-dropped wrapper.
        self.recurrent = ([WeightDrop(layer, reg['weight_drop']) for layer in self.rnn_layers]
                          if reg['weight_drop'] else self.rnn_layers)
        self.activation_reg = (ActivationRegularisation(reg['ar_alpha'], reg['tar_beta'])
                               if reg['ar_alpha'] or reg['tar_beta'] else None)
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
        for layer in [*self.dropouts, self.embed, *self.recurrent, self.activation_reg]:
            if hasattr(layer, 'train_flg'):
                layer.train_flg = train_flg
        h = self.dropouts[0].forward(self.embed.forward(xs))
        for layer, dropout in zip(self.recurrent, self.dropouts[1:]):
            self.last_hs = layer.forward(h)
            h = dropout.forward(self.last_hs)
        self.last_dropped = h
        return self.affine.forward(h)

    def forward(self, xs, ts, train_flg=True):
        """Mean cross-entropy of predicting ts from xs (a backend scalar); in
        training plus the AR and TAR terms when the model has them."""
        score = self.predict(xs, train_flg)
        loss = self.loss_layer.forward(score, ts)
        if self.activation_reg is not None and train_flg:
            loss = loss + self.activation_reg.forward(self.last_hs, self.last_dropped)
        return loss

    def backward(self, dout=1):
        d_tar, d_ar = self.activation_reg.backward() if self.activation_reg is not None else (None, None)
        if d_ar is not None and not (isinstance(dout, (int, float)) and dout == 1):
            d_tar, d_ar = d_tar * dout, d_ar * dout
        dout = self.loss_layer.backward(dout)
        dout = self.affine.backward(dout)
        if d_ar is not None:
            dout = dout + d_ar                 # AR: on the last layer's output after dropout
        for i, (layer, dropout) in enumerate(zip(reversed(self.recurrent), reversed(self.dropouts[1:]))):
            dout = dropout.backward(dout)
            if i == 0 and d_tar is not None:
                dout = dout + d_tar            # TAR: on the same output before dropout
            dout = layer.backward(dout)
        self.embed.backward(self.dropouts[0].backward(dout))

    def reset_state(self):
        for layer in self.rnn_layers:
            layer.reset_state()

    def get_state(self):
        """The recurrent layers' carried state: per layer (h,) or, for LSTM, (h, c).
        The arrays themselves, not copies: on the CUDA-graph path they are the
        fixed state arrays the next step overwrites, so copy them to keep them."""
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
    from common.run.fileio import load_npz
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


def check_regularisation(options):
    """The regularisation options, defaults filled in; ConfigError for an unknown or bad one."""
    unknown = set(options) - set(REGULARISATION)
    if unknown:
        raise ConfigError(f"unknown model option(s) {', '.join(sorted(unknown))}: choose from "
                          f"{', '.join(REGULARISATION)}")
    reg = {**REGULARISATION, **options}
    for name in ('dropout_input', 'dropout_hidden', 'dropout_output', 'embed_dropout', 'weight_drop'):
        value = reg[name]
        if value is not None and not 0 <= value < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    for name in ('ar_alpha', 'tar_beta'):
        if not reg[name] >= 0:
            raise ConfigError(f"{name} must be non-negative, got {reg[name]!r}")
    return reg


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

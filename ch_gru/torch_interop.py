"""Weights to and from PyTorch: ``nn.GRU``, ``nn.LSTM`` and whole language models.

PyTorch is optional: it is imported inside the functions that need it, never
at module level, so the project runs without it.

**GRU.** PyTorch's ``nn.GRU`` (and cuDNN) puts the reset gate after the
recurrent product and has two biases; its gate rows are r | z | n and its
update gate is the complement of ours:

    r = σ(W_ir x + b_ir + W_hr h + b_hr)      z_pt = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      h' = (1 − z_pt) ⊙ n + z_pt ⊙ h

That is :class:`common.time_layers.TimeGRU` with ``reset_after=True``
(blocks z | r | h̃, h' = (1 − z) ⊙ h + z ⊙ h̃) with z = 1 − z_pt = σ(−(...)),
so the z block is PyTorch's negated (σ(−a) = 1 − σ(a)) and the rest is
transposed and reordered:

    Wx = [−W_iz | W_ir | W_in]ᵀ   Wh = [−W_hz | W_hr | W_hn]ᵀ
    b  = [−b_iz | b_ir | b_in]    bh = [−b_hz | b_hr | b_hn]

The book's form (``reset_after=False``, h̃ = tanh(x Wxh + (r ⊙ h) Whh + bh))
is another function: it has no ``nn.GRU`` counterpart and is not exported.

**LSTM.** The same equations; PyTorch's rows are i | f | g | o, the book's
blocks f | g | i | o, and PyTorch's two biases are one sum here:

    Wx = [W_if | W_ig | W_ii | W_io]ᵀ   (Wh alike)   b = (b_ih + b_hh) reordered

On export the sum goes to ``bias_ih`` and ``bias_hh`` is zero.

**Models.** :func:`to_torch_model` turns an :class:`~ch_gru.rnnlm.Rnnlm`
(or ``BetterRnnlm``) with a GRU in the reset-after form or an LSTM into a
:class:`TorchRnnlm`-shaped ``nn.Module`` (``encoder`` = ``nn.Embedding``,
``rnn`` = ``nn.GRU`` / ``nn.LSTM``, ``decoder`` = ``nn.Linear``, tied to the
encoder when the model ties, dropout as in the model), batch first, whose
logits are ``model.predict``'s; :func:`from_torch_model` goes back (and reads
any module with those three parts, e.g. PyTorch's word_language_model
``RNNModel``). The AWD-LSTM regularisers act only in training and are not
carried over.
"""
import numpy

from common import backend
from common.errors import ConfigError

__all__ = ['gru_from_torch', 'gru_to_torch', 'lstm_from_torch', 'lstm_to_torch', 'from_torch_gru',
           'to_torch_gru', 'from_torch_lstm', 'to_torch_lstm', 'to_torch_model', 'from_torch_model',
           'torch_rnnlm_class']


def _torch():
    try:
        import torch
    except ImportError:
        raise ConfigError('PyTorch is not installed: pip install torch to convert to and from it') from None
    return torch


def _host(t):
    """A tensor (any device) or None as a float64 NumPy array."""
    return None if t is None else t.detach().cpu().double().numpy()


# -- one layer's arrays --------------------------------------------------------------------------

def _gru_rows(H):
    """Our blocks z | r | h̃ as PyTorch's rows (r | z | n), and the sign of each block."""
    order = numpy.r_[H:2 * H, 0:H, 2 * H:3 * H]
    sign = numpy.r_[-numpy.ones(H), numpy.ones(2 * H)]
    return order, sign


def gru_from_torch(w_ih, w_hh, b_ih=None, b_hh=None):
    """PyTorch's GRU arrays (3H, D), (3H, H), (3H,), (3H,) as (Wx, Wh, b, bh)
    of ``TimeGRU(..., reset_after=True)`` (NumPy; missing biases are zeros)."""
    H = w_hh.shape[1]
    order, sign = _gru_rows(H)
    b_ih = numpy.zeros(3 * H) if b_ih is None else b_ih
    b_hh = numpy.zeros(3 * H) if b_hh is None else b_hh
    return (w_ih[order].T * sign, w_hh[order].T * sign, b_ih[order] * sign, b_hh[order] * sign)


def gru_to_torch(Wx, Wh, b, bh):
    """The inverse of :func:`gru_from_torch`: (w_ih, w_hh, b_ih, b_hh)."""
    H = Wh.shape[0]
    order, sign = _gru_rows(H)
    inverse = numpy.argsort(order)
    return tuple(numpy.ascontiguousarray((a * sign)[..., inverse].T) for a in (Wx, Wh, b, bh))


_LSTM_ROWS = (1, 2, 0, 3)    # our f | g | i | o as PyTorch's blocks i | f | g | o


def _lstm_rows(H):
    return numpy.concatenate([numpy.arange(k * H, (k + 1) * H) for k in _LSTM_ROWS])


def lstm_from_torch(w_ih, w_hh, b_ih=None, b_hh=None):
    """PyTorch's LSTM arrays (4H, D), (4H, H), (4H,), (4H,) as (Wx, Wh, b) of
    ``TimeLSTM``: the blocks reordered, b = b_ih + b_hh."""
    H = w_hh.shape[1]
    order = _lstm_rows(H)
    b = numpy.zeros(4 * H)
    for bias in (b_ih, b_hh):
        if bias is not None:
            b = b + bias
    return w_ih[order].T, w_hh[order].T, b[order]


def lstm_to_torch(Wx, Wh, b):
    """The inverse of :func:`lstm_from_torch`: (w_ih, w_hh, b_ih, b_hh), the
    bias in b_ih and zeros in b_hh."""
    inverse = numpy.argsort(_lstm_rows(Wh.shape[0]))
    w_ih, w_hh, b_ih = (numpy.ascontiguousarray(a[..., inverse].T) for a in (Wx, Wh, b))
    return w_ih, w_hh, b_ih, numpy.zeros_like(b_ih)


# -- nn.GRU / nn.LSTM <-> lists of Time layers -----------------------------------------------------

def _check_module(module, kind):
    torch = _torch()
    cls = getattr(torch.nn, kind)
    if not isinstance(module, cls):
        raise ConfigError(f'expected a torch.nn.{kind}, got {type(module).__name__}: pass the {kind} module itself')
    if module.bidirectional:
        raise ConfigError(f'a bidirectional nn.{kind} has no single-direction layer list here: '
                          f'convert a module built with bidirectional=False')
    if getattr(module, 'proj_size', 0):
        raise ConfigError(f'nn.LSTM with proj_size={module.proj_size} has no counterpart here: use proj_size=0')


def _module_arrays(module):
    """Per layer: (w_ih, w_hh, b_ih, b_hh) as float64 NumPy arrays (biases None without bias)."""
    return [tuple(_host(getattr(module, f'{name}_l{k}', None)) for name in ('weight_ih', 'weight_hh',
                                                                             'bias_ih', 'bias_hh'))
            for k in range(module.num_layers)]


def _dtype(dtype, module):
    return numpy.dtype(dtype or str(next(module.parameters()).dtype).replace('torch.', ''))


def from_torch_gru(module, dtype=None, stateful=False):
    """``nn.GRU`` (any num_layers, batch_first either way) -> a list of
    ``TimeGRU(..., reset_after=True)``, one per layer, computing what the
    module computes (our layers are batch first). ``dtype``: the arrays'
    dtype, the module's when None."""
    from common.time_layers import TimeGRU
    _check_module(module, 'GRU')
    dt = _dtype(dtype, module)
    layers = []
    for arrays in _module_arrays(module):
        Wx, Wh, b, bh = (backend.asarray(a.astype(dt)) for a in gru_from_torch(*arrays))
        layers.append(TimeGRU(Wx, Wh, b, stateful=stateful, reset_after=True, bh=bh))
    return layers


def from_torch_lstm(module, dtype=None, stateful=False):
    """``nn.LSTM`` (any num_layers, batch_first either way) -> a list of ``TimeLSTM``."""
    from common.time_layers import TimeLSTM
    _check_module(module, 'LSTM')
    dt = _dtype(dtype, module)
    return [TimeLSTM(*(backend.asarray(a.astype(dt)) for a in lstm_from_torch(*arrays)), stateful=stateful)
            for arrays in _module_arrays(module)]


def _check_layers(layers, kind):
    """The sizes (D, H) of a stack of Time layers; ConfigError when they do not chain."""
    from common.time_layers import TimeGRU, TimeLSTM
    cls = {'GRU': TimeGRU, 'LSTM': TimeLSTM}[kind]
    layers = list(layers)
    if not layers:
        raise ConfigError(f'no layers to export to nn.{kind}: pass a list of Time{kind} layers')
    for k, layer in enumerate(layers):
        if type(layer) is not cls:
            raise ConfigError(f'layer {k} is a {type(layer).__name__}, not a Time{kind}: '
                              f'export Time{kind} layers to nn.{kind}')
        if kind == 'GRU' and not layer.reset_after:
            raise ConfigError(f'layer {k} is a book-form GRU (reset gate before Whh), which nn.GRU cannot '
                              f'compute: build it with reset_after=True (Rnnlm(..., reset_after=True)) and train that')
    D, H = layers[0].params[0].shape[0], layers[0].params[1].shape[0]
    for k, layer in enumerate(layers[1:], 1):
        d, h = layer.params[0].shape[0], layer.params[1].shape[0]
        if (d, h) != (H, H):
            raise ConfigError(f'layer {k} has input size {d} and hidden size {h} but nn.{kind} stacks layers of '
                              f'input and hidden size {H}: give every layer after the first Wx of shape ({H}, ...)')
    return layers, D, H


def _to_module(layers, kind, batch_first, dropout, convert):
    torch = _torch()
    layers, D, H = _check_layers(layers, kind)
    dt = getattr(torch, backend.asnumpy(layers[0].params[0]).dtype.name)
    module = getattr(torch.nn, kind)(D, H, num_layers=len(layers), batch_first=batch_first, dropout=dropout)
    module = module.to(dt)
    with torch.no_grad():
        for k, layer in enumerate(layers):
            arrays = convert(*(backend.asnumpy(p).astype(numpy.float64) for p in layer.params))
            for name, a in zip(('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'), arrays):
                getattr(module, f'{name}_l{k}').copy_(torch.from_numpy(a))
    return module


def to_torch_gru(layers, batch_first=True, dropout=0.0):
    """A list of ``TimeGRU(..., reset_after=True)`` -> ``nn.GRU`` (num_layers =
    len(layers), in the layers' dtype) that computes the same."""
    return _to_module(layers, 'GRU', batch_first, dropout, gru_to_torch)


def to_torch_lstm(layers, batch_first=True, dropout=0.0):
    """A list of ``TimeLSTM`` -> ``nn.LSTM`` that computes the same."""
    return _to_module(layers, 'LSTM', batch_first, dropout, lstm_to_torch)


# -- whole language models ------------------------------------------------------------------------

_CLASS = []


def torch_rnnlm_class():
    """The ``nn.Module`` class :func:`to_torch_model` builds (made at the first call)."""
    if _CLASS:
        return _CLASS[0]
    torch = _torch()

    class TorchRnnlm(torch.nn.Module):
        """Embedding → Dropout → nn.GRU / nn.LSTM (dropout between layers) → Dropout → Linear,
        batch first; the decoder's weight is the encoder's when tied.
        forward(xs (N, T) ids, hidden=None) -> (logits (N, T, V), hidden)."""

        def __init__(self, vocab_size, wordvec_size, hidden_size, num_layers=2, dropout_ratio=0.5, cell='gru',
                     tie_weights=True, source='Rnnlm'):
            super().__init__()
            self.source = source          # the class of the model it came from
            self.drop = torch.nn.Dropout(dropout_ratio)
            self.encoder = torch.nn.Embedding(vocab_size, wordvec_size)
            rnn = {'gru': torch.nn.GRU, 'lstm': torch.nn.LSTM}[cell]
            self.rnn = rnn(wordvec_size, hidden_size, num_layers, batch_first=True,
                           dropout=dropout_ratio if num_layers > 1 else 0.0)
            self.decoder = torch.nn.Linear(hidden_size, vocab_size)
            if tie_weights:
                self.decoder.weight = self.encoder.weight

        def forward(self, xs, hidden=None):
            out, hidden = self.rnn(self.drop(self.encoder(xs)), hidden)
            return self.decoder(self.drop(out)), hidden

    _CLASS.append(TorchRnnlm)
    return TorchRnnlm


def _model_cell(model):
    from common.time_layers import TimeGRU, TimeLSTM
    layer = model.rnn_layers[0]
    if isinstance(layer, TimeLSTM):
        return 'lstm'
    if isinstance(layer, TimeGRU):
        return 'gru'
    raise ConfigError(f'nn has no counterpart of a model of {type(layer).__name__} layers here: '
                      f"export a model built with cell='gru' (reset_after=True) or cell='lstm'")


def to_torch_model(model):
    """An ``Rnnlm`` / ``BetterRnnlm`` -> a :func:`torch_rnnlm_class` module in
    the model's dtype whose logits (in eval mode) are ``model.predict``'s."""
    torch = _torch()
    cell = _model_cell(model)
    cfg = model.config
    rnn = (to_torch_gru if cell == 'gru' else to_torch_lstm)(model.rnn_layers)
    tie = bool(cfg['tie_weights'])
    module = torch_rnnlm_class()(cfg['vocab_size'], cfg['wordvec_size'], cfg['hidden_size'], len(model.rnn_layers),
                                 cfg['dropout_ratio'], cell, tie, type(model).__name__)
    dt = next(rnn.parameters()).dtype
    module = module.to(dt)
    with torch.no_grad():
        module.rnn.load_state_dict(rnn.state_dict())
        module.encoder.weight.copy_(torch.from_numpy(backend.asnumpy(model.embed.params[0])))
        if not tie:
            module.decoder.weight.copy_(torch.from_numpy(backend.asnumpy(model.affine.params[0]).T.copy()))
        module.decoder.bias.copy_(torch.from_numpy(backend.asnumpy(model.affine.params[1])))
    return module


def from_torch_model(module, dtype=None):
    """A module with ``encoder`` (nn.Embedding), ``rnn`` (nn.GRU or nn.LSTM,
    batch_first either way) and ``decoder`` (nn.Linear) -> an ``Rnnlm``
    (a ``BetterRnnlm`` when the module came from one) with the same weights:
    a GRU in the reset-after form, the output tied when the decoder's weight
    is the encoder's. ``dtype``: the module's when None."""
    from ch_gru.better_rnnlm import BetterRnnlm
    from ch_gru.rnnlm import Rnnlm
    torch = _torch()
    parts = [getattr(module, name, None) for name in ('encoder', 'rnn', 'decoder')]
    if not (isinstance(parts[0], torch.nn.Embedding) and isinstance(parts[1], (torch.nn.GRU, torch.nn.LSTM))
            and isinstance(parts[2], torch.nn.Linear)):
        raise ConfigError(f'{type(module).__name__} is not an embedding + GRU/LSTM + linear language model: '
                          f'give a module with encoder (nn.Embedding), rnn (nn.GRU or nn.LSTM) and decoder (nn.Linear)')
    encoder, rnn, decoder = parts
    cell = 'gru' if isinstance(rnn, torch.nn.GRU) else 'lstm'
    layers = (from_torch_gru if cell == 'gru' else from_torch_lstm)(rnn, dtype='float64')
    V, D = encoder.weight.shape
    H = rnn.hidden_size
    if decoder.weight.shape != (V, H) or decoder.bias is None:
        raise ConfigError(f'the decoder maps {decoder.in_features} to {decoder.out_features} (bias: '
                          f'{decoder.bias is not None}) but the model needs {H} -> {V} with a bias: fix the decoder')
    tie = decoder.weight is encoder.weight
    dt = _dtype(dtype, module).name
    p = getattr(getattr(module, 'drop', None), 'p', rnn.dropout)
    options = dict(dropout_ratio=p, cell=cell, dtype=dt, **({'reset_after': True} if cell == 'gru' else {}))
    if getattr(module, 'source', None) == 'BetterRnnlm' and rnn.num_layers == 2 and tie:
        model = BetterRnnlm(V, D, H, **options)
    else:
        model = Rnnlm(V, D, H, num_layers=rnn.num_layers, tie_weights=tie, **options)
    for layer, imported in zip(model.rnn_layers, layers):
        for mine, theirs in zip(layer.params, imported.params):
            mine[...] = backend.asarray(backend.asnumpy(theirs).astype(dt))
    model.embed.params[0][...] = backend.asarray(_host(encoder.weight).astype(dt))
    if not tie:
        model.affine.params[0][...] = backend.asarray(_host(decoder.weight).T.astype(dt))
    model.affine.params[1][...] = backend.asarray(_host(decoder.bias).astype(dt))
    return model

"""The regularisers of AWD-LSTM (Merity, Keskar & Socher, "Regularizing and
Optimizing LSTM Language Models", 2017), as layers in the book's style.

Each one is a small layer with ``params``/``grads`` (empty, or those of the
layer it wraps), ``forward`` and ``backward``, and a ``train_flg``: at
evaluation every one of them is the identity (or adds nothing). The masks are
drawn on the backend (:func:`common.backend.uniform`, seeded with
:func:`common.backend.seed` and saved in checkpoints), one per ``forward`` call,
that is once per batch: a truncated-BPTT window is one sequence to them, as
in AWD-LSTM's code. ``keep_mask = True`` keeps the last mask instead of
drawing a new one (gradient checks call ``forward`` many times).

* :class:`LockedDropout` — variational dropout: one mask per sequence,
  shared by all time steps.
* :class:`EmbeddingDropout` — whole words dropped from the embedding matrix.
* :class:`WeightDrop` — DropConnect on the recurrent matrix Wh of any Time
  recurrent layer (TimeGRU, TimeLSTM, TimeRNN).
* :class:`ActivationRegularisation` — the AR and TAR loss terms.
"""
from common.np import *  # noqa: F401,F403
from common import backend
from common.layers import dropout_mask
from common.time_layers import TimeEmbedding


class _Masked:
    """What the masked layers share: ``train_flg``, ``keep_mask``, ``mask``."""

    def __init__(self, ratio, rows=True):
        self.params, self.grads = [], []
        self.ratio = ratio
        self.rows = rows            # the mask's first axis is the batch's rows (data-parallel: see np.uniform)
        self.train_flg = True
        self.keep_mask = False
        self.mask = None

    def active(self):
        return self.train_flg and self.ratio > 0

    def draw(self, shape, dtype):
        """A new inverted-dropout mask (0 or 1 / (1 − ratio)), unless ``keep_mask``."""
        if not (self.keep_mask and self.mask is not None and self.mask.shape == tuple(shape)):
            self.mask = dropout_mask(shape, self.ratio, dtype, self.rows)
        return self.mask


#: ``train_flg`` of a layer that holds its mask state in ``self.masked``.
_masked_train_flg = property(lambda self: self.masked.train_flg,
                             lambda self, value: setattr(self.masked, 'train_flg', value))


class LockedDropout(_Masked):
    """Variational ("locked") dropout (Gal & Ghahramani 2016): one mask per
    sequence, the same at every time step.

        m[n, d] ~ Bernoulli(1 − p) / (1 − p)          (N, 1, D)
        out[n, t, d] = xs[n, t, d] · m[n, d]          dxs = dout ⊙ m

    xs: (N, T, D) -> (N, T, D). A unit of row n is dropped for the whole
    window, so the recurrent layer above sees the same units missing at every
    step, unlike :class:`common.time_layers.TimeDropout` (a new mask per
    (n, t)). Identity when ``train_flg`` is false or p = 0.
    """

    def forward(self, xs):
        if not self.active():
            return xs
        N, _, D = xs.shape
        return xs * self.draw((N, 1, D), xs.dtype)

    def backward(self, dout):
        return dout * self.mask if self.active() else dout


class EmbeddingDropout(TimeEmbedding):
    """A word embedding with whole words dropped (Gal & Ghahramani 2016, as
    AWD-LSTM's ``embedded_dropout``): for each batch a word v of the
    vocabulary is kept with probability 1 − p, and the kept rows are scaled.

        s[v] ~ Bernoulli(1 − p) / (1 − p)             (V,)
        out[n, t] = s[xs[n, t]] · W[xs[n, t]]         (N, T, D)
        dW[v] = Σ_{(n,t): xs[n,t] = v} s[v] · dout[n, t]

    W: (V, D); xs: (N, T) ids. A dropped word is zero at every place it
    occurs in the batch, so the model cannot lean on any single word vector.
    Only the lookup is dropped: an output layer tied to W uses W itself.
    With p = 0 or ``train_flg`` false it is :class:`TimeEmbedding`.
    """

    def __init__(self, W, ratio=0.1):
        super().__init__(W)
        self.masked = _Masked(ratio, rows=False)
        self.scale = None

    train_flg = _masked_train_flg

    def forward(self, idx):
        out = super().forward(idx)
        self.scale = None
        if self.masked.active():
            W, = self.params
            s = self.masked.draw((W.shape[0], 1), W.dtype)
            self.scale = s[self.idx]               # (N, T, 1)
            out *= self.scale
        return out

    def backward(self, dout):
        return super().backward(dout if self.scale is None else dout * self.scale)


class WeightDrop:
    """DropConnect on the recurrent weights (Wan et al. 2013; AWD-LSTM's
    ``WeightDrop``) of a Time recurrent layer ``layer`` (TimeGRU, TimeLSTM or
    TimeRNN): one mask M per ``forward``, the same at every time step.

        M ~ Bernoulli(1 − p) / (1 − p)                (H, G·H)
        the layer runs with Wh ⊙ M in place of Wh    xs (N, T, D) -> hs (N, T, H)
        dWh = dWh' ⊙ M                               (dWh': the layer's gradient for Wh ⊙ M)

    so a dropped connection gets no gradient. ``params`` are the layer's own
    arrays (Wx, Wh, b: the optimizer updates Wh itself), ``grads`` its
    gradients. At evaluation the layer runs with Wh. ``layer.params[1]`` is
    the array the layer computes with (Wh ⊙ M in training); the model keeps
    ``layer`` in ``rnn_layers`` for its state (h, c) and checkpoints.
    """

    def __init__(self, layer, ratio=0.5):
        self.layer = layer
        self.params = list(layer.params)       # the raw Wx, Wh, b
        self.grads = layer.grads
        self.masked = _Masked(ratio, rows=False)

    train_flg = _masked_train_flg

    def forward(self, xs):
        Wh = self.params[1]
        if self.masked.active():
            self.layer.params[1] = Wh * self.masked.draw(Wh.shape, Wh.dtype)
        else:
            self.layer.params[1] = Wh
        return self.layer.forward(xs)

    def backward(self, dhs):
        dxs = self.layer.backward(dhs)
        if self.masked.active():
            self.grads[1] *= self.masked.mask
        return dxs


class ActivationRegularisation:
    """AR and TAR (Merity et al. 2017) on the last recurrent layer's outputs,
    as a loss term:

        AR  = α · mean(ĥ²)                       over (N, T, H), ĥ the outputs after dropout
        TAR = β · mean((h[:, t] − h[:, t−1])²)   over (N, T − 1, H), h the outputs before dropout

    forward(h, h_dropped) -> AR + TAR (a backend scalar), both (N, T, H);
    backward() -> (dh, dh_dropped):

        dh_dropped = 2α ĥ / (N·T·H)
        dh[:, t]  += 2β (h[:, t] − h[:, t−1]) / (N·(T−1)·H),  dh[:, t−1] −= the same

    AR keeps activations small; TAR keeps consecutive hidden states close.
    Nothing (0, and no gradient) when ``train_flg`` is false.
    """

    def __init__(self, alpha=2.0, beta=1.0):
        self.params, self.grads = [], []
        self.alpha, self.beta = alpha, beta
        self.train_flg = True
        self.cache = None

    def forward(self, h, h_dropped):
        self.cache = None
        if not self.train_flg or (self.alpha == 0 and self.beta == 0):
            return 0.0
        diff = h[:, 1:] - h[:, :-1]
        self.cache = (h, h_dropped, diff)
        loss = self.alpha * (h_dropped * h_dropped).mean()
        if diff.size:
            loss = loss + self.beta * (diff * diff).mean()
        return loss

    def backward(self):
        """(dh, dh_dropped), or (None, None) when forward added nothing."""
        if self.cache is None:
            return None, None
        h, h_dropped, diff = self.cache
        dh_dropped = h_dropped * (2 * self.alpha / h_dropped.size)
        dh = np.zeros_like(h)
        if diff.size:
            g = diff * (2 * self.beta / diff.size)
            dh[:, 1:] += g
            dh[:, :-1] -= g
        return dh, dh_dropped

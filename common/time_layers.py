"""Layers over whole sequences: inputs (N, T, ...), batch first as in the book.

The recurrent layers (TimeRNN, TimeLSTM, TimeGRU) share one structure:

* one matrix product projects the inputs of all T steps at once
  (``A = xs Wx + b``, shape (N, T, G·H) for G gate blocks);
* inside the time loop only the recurrent products ``h Wh`` remain;
* backward runs the loop in reverse to get the pre-activation gradients
  ``dA`` of every step, then one product each gives dWx, dWh and dxs.

The Time layers use no per-step layer objects. ``stateful=True`` carries the last hidden
state into the next ``forward`` call (truncated BPTT); ``reset_state()`` drops
it, and so does a call with another batch size (e.g. evaluation after
training), which starts from zeros. The dtype of the weights (float32 normally, float64 for gradient checks)
is the dtype of every buffer.

The book's per-step cells ``RNN``, ``LSTM`` and ``GRU`` (one step, the state
passed in and out) are their Time layers run for T = 1, so each cell's math
is written once. ``from common.time_layers import *`` gives what the book's
module gives: ``np``, ``GPU``, everything of :mod:`common.layers`, ``sigmoid``
and every layer here.
"""
from common.np import *  # noqa: F401,F403
from common import backend
from common import kernels
from common.backend import matmul, matmul_add
from common.errors import ConfigError
from common import layers as _layers
from common.functions import sigmoid
from common.layers import *  # noqa: F401,F403  (the book's module hands on every layer of common.layers)
from common.layers import Embedding, SigmoidWithLoss, SoftmaxWithLoss, dropout_mask

__all__ = [*_layers.__all__, 'sigmoid',
           'RNN', 'TimeRNN', 'LSTM', 'TimeLSTM', 'GRU', 'TimeGRU', 'TimeBiLSTM',
           'TimeEmbedding', 'TimeAffine', 'TimeSoftmaxWithLoss', 'TimeDropout', 'TimeSigmoidWithLoss',
           'Simple_TimeAffine', 'Simple_TimeSoftmaxWithLoss']


class _TimeRecurrent:
    """What TimeRNN, TimeLSTM and TimeGRU have in common."""

    def __init__(self, Wx, Wh, b, stateful=False):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.stateful = stateful
        self.h = None    # last hidden state (N, H), carried over when stateful
        self.dh = None   # gradient w.r.t. the initial hidden state, after backward
        self.cache = None

    #: the attributes that carry state from one forward call to the next
    state_names = ('h',)

    def set_state(self, h):
        self.h = h

    def reset_state(self):
        self.h = None

    def state_buffers(self, N):
        """Zero arrays in the shape of the carried state of a batch of N rows,
        by name (the CUDA-graph path keeps the state in such fixed arrays)."""
        Wh = self.params[1]
        return {name: np.zeros((N, Wh.shape[0]), dtype=Wh.dtype) for name in self.state_names}

    def _carried(self, state, N):
        """``state`` if it should carry into a batch of N rows, else None."""
        if self.stateful and state is not None and state.shape[0] == N:
            return state
        return None

    def _initial_state(self, N, dtype):
        h = self._carried(self.h, N)
        return np.zeros((N, self.params[1].shape[0]), dtype=dtype) if h is None else h.astype(dtype, copy=False)

    def _input_projection(self, xs):
        """A[:, t] = x_t Wx + b for all t in one product: (N, T, G·H)."""
        Wx, b = self.params[0], self.params[2]
        N, T, D = xs.shape
        A = matmul(xs.reshape(N * T, D), Wx).reshape(N, T, -1)
        A += b
        return A

    def _input_gradients(self, xs, dA):
        """dWx, db and dxs from the pre-activation gradients of all steps."""
        Wx = self.params[0]
        N, T, D = xs.shape
        dA2 = dA.reshape(N * T, -1)
        matmul(xs.reshape(N * T, D).T, dA2, out=self.grads[0])
        dA2.sum(axis=0, out=self.grads[2])
        return matmul(dA2, Wx.T).reshape(N, T, D)

    @staticmethod
    def _previous_states(h0, hs):
        """The state each step started from, (h0, h_1, ..., h_{T-1}): (N, T, H)."""
        return np.concatenate([h0[:, None, :], hs[:, :-1]], axis=1)


class TimeRNN(_TimeRecurrent):
    """Elman RNN over T steps: h_t = tanh(x_t Wx + h_{t-1} Wh + b).

    Wx: (D, H), Wh: (H, H), b: (H,). forward: xs (N, T, D) -> hs (N, T, H).
    """

    def forward(self, xs):
        _, Wh, _ = self.params
        N, T, _ = xs.shape
        h0 = self._initial_state(N, xs.dtype)
        hs = self._input_projection(xs)        # becomes the outputs, step by step
        h = h0
        for t in range(T):
            a = hs[:, t]
            matmul_add(h, Wh, a)
            h = np.tanh(a, out=a)
        self.h = h
        self.cache = (xs, h0, hs)
        return hs

    def backward(self, dhs):
        _, Wh, _ = self.params
        xs, h0, hs = self.cache
        N, T, H = hs.shape
        dA = np.empty_like(hs)
        dh = np.zeros_like(h0)
        for t in reversed(range(T)):
            da = dA[:, t]
            np.add(dhs[:, t], dh, out=da)
            da *= 1 - hs[:, t] ** 2            # tanh' = 1 - h²
            dh = matmul(da, Wh.T)
        self.dh = dh
        matmul(self._previous_states(h0, hs).reshape(N * T, H).T, dA.reshape(N * T, H), out=self.grads[1])
        return self._input_gradients(xs, dA)


class TimeLSTM(_TimeRecurrent):
    """LSTM over T steps, gate blocks in the book's order f | g | i | o:

        f = σ(x Wxf + h Whf + bf)      g = tanh(x Wxg + h Whg + bg)
        i = σ(x Wxi + h Whi + bi)      o = σ(x Wxo + h Who + bo)
        c' = f ⊙ c + g ⊙ i             h' = o ⊙ tanh(c')

    Wx: (D, 4H), Wh: (H, 4H), b: (4H,). forward: xs (N, T, D) -> hs (N, T, H);
    backward: dhs (N, T, H), and optionally dc (N, H), the gradient of the
    last cell state c_T (0 when None) -> dxs (N, T, D); then ``dh``, ``dc``
    are the gradients of the initial h and c.
    ``set_state(h, c=None)``; ``reset_state()`` clears both h and c.
    """

    state_names = ('h', 'c')

    def __init__(self, Wx, Wh, b, stateful=False):
        super().__init__(Wx, Wh, b, stateful)
        self.c = None
        self.dc = None

    def set_state(self, h, c=None):
        self.h, self.c = h, c

    def reset_state(self):
        self.h, self.c = None, None

    def forward(self, xs):
        _, Wh, _ = self.params
        N, T, _ = xs.shape
        H = Wh.shape[0]
        h0 = self._initial_state(N, xs.dtype)
        c0 = self._carried(self.c, N)
        c0 = np.zeros_like(h0) if c0 is None else c0.astype(h0.dtype, copy=False)
        A = self._input_projection(xs)         # pre-activations, then gate values
        hs = np.empty((N, T, H), dtype=xs.dtype)
        # c_t and tanh(c_t) time-major: c_{t-1} and c_t are disjoint blocks, so
        # c_t = f ⊙ c_{t-1} needs no copy of its input (CuPy copies an input
        # whose memory bounds overlap the output's).
        cs = np.empty((T, N, H), dtype=xs.dtype)
        tcs = np.empty((T, N, H), dtype=xs.dtype)
        h, c = h0, c0
        for t in range(T):
            a = A[:, t]
            matmul_add(h, Wh, a)
            f, g, i, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            sigmoid(f, out=f)
            np.tanh(g, out=g)
            io = a[:, 2 * H:]
            sigmoid(io, out=io)                # i and o together (one view: CuPy copies a distinct one)
            c = np.multiply(f, c, out=cs[t])
            c += g * i
            tc = np.tanh(c, out=tcs[t])
            h = np.multiply(o, tc, out=hs[:, t])
        self.h, self.c = h, c
        self.cache = (xs, h0, c0, A, hs, cs, tcs)
        return hs

    def backward(self, dhs, dc=None):
        _, Wh, _ = self.params
        xs, h0, c0, A, hs, cs, tcs = self.cache
        N, T, H = hs.shape
        dA = np.empty_like(A)
        dh = np.zeros_like(h0)
        dc = np.zeros_like(c0) if dc is None else dc
        for t in reversed(range(T)):
            a = A[:, t]
            f, g, i, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            tc = tcs[t]
            c_prev = c0 if t == 0 else cs[t - 1]
            dh = dhs[:, t] + dh
            ds = dc + dh * o * (1 - tc ** 2)
            da = dA[:, t]
            np.multiply(ds * c_prev, f * (1 - f), out=da[:, :H])
            np.multiply(ds * i, 1 - g ** 2, out=da[:, H:2 * H])
            np.multiply(ds * g, i * (1 - i), out=da[:, 2 * H:3 * H])
            np.multiply(dh * tc, o * (1 - o), out=da[:, 3 * H:])
            dc = ds * f
            dh = matmul(da, Wh.T)
        self.dh, self.dc = dh, dc
        matmul(self._previous_states(h0, hs).reshape(N * T, H).T, dA.reshape(N * T, -1), out=self.grads[1])
        return self._input_gradients(xs, dA)


class TimeGRU(_TimeRecurrent):
    """GRU over T steps, gate blocks z | r | h̃ stacked in Wx, Wh and b.

    The book's form (``reset_after=False``), the reset gate before the
    recurrent product:

        z  = σ(x Wxz + h Whz + bz)
        r  = σ(x Wxr + h Whr + br)
        h̃  = tanh(x Wxh + (r ⊙ h) Whh + bh)
        h' = (1 − z) ⊙ h + z ⊙ h̃

    Per step the z and r gates share one product ``h [Whz | Whr]``; h̃ needs
    ``(r ⊙ h) Whh`` after r is known, so that is the second product.

    ``reset_after=True``: the form of PyTorch's ``nn.GRU`` and cuDNN, the
    reset gate after the recurrent product, with a recurrent bias ``bh``
    (3H,) as a fourth parameter (zeros when None):

        z  = σ(x Wxz + bz + h Whz + bhz)
        r  = σ(x Wxr + br + h Whr + bhr)
        h̃  = tanh(x Wxh + bh̃ + r ⊙ (h Whh + bhh))
        h' = (1 − z) ⊙ h + z ⊙ h̃

    so one product ``h Wh`` of all 3H columns serves a step. (PyTorch's
    gate order is r | z | n and its update gate is our 1 − z:
    :mod:`ch_gru.torch_interop` converts.) ``params`` = [Wx, Wh, b, bh].

    Wx: (D, 3H), Wh: (H, 3H), b: (3H,). forward: xs (N, T, D) -> hs (N, T, H);
    backward: dhs (N, T, H) -> dxs (N, T, D). After forward ``cache[2]`` holds
    the activations z | r | h̃ of every step, (N, T, 3H), in both forms.
    """

    def __init__(self, Wx, Wh, b, stateful=False, reset_after=False, bh=None):
        super().__init__(Wx, Wh, b, stateful)
        self.reset_after = bool(reset_after)
        if self.reset_after:
            bh = np.zeros_like(b) if bh is None else bh
            if bh.shape != b.shape:
                raise ConfigError(f'TimeGRU: the recurrent bias bh has shape {bh.shape} but b has {b.shape}: '
                                  f'give bh of shape (3H,) like b')
            self.params.append(bh)
            self.grads.append(np.zeros_like(bh))
        elif bh is not None:
            raise ConfigError('TimeGRU: bh (the recurrent bias) belongs to the reset-after form: '
                              'build with reset_after=True, or leave bh out')

    def forward(self, xs):
        Wx, Wh = self.params[:2]
        xs = xs.astype(Wx.dtype, copy=False)
        N, T, _ = xs.shape
        H = Wh.shape[0]
        h0 = self._initial_state(N, xs.dtype)
        G = self._input_projection(xs)         # x Wx + b, overwritten by z | r | h̃
        hs = np.empty((N, T, H), dtype=xs.dtype)
        # book form: r ⊙ h_{t-1}, for dWhh; reset after: h_{t-1} Whh + bhh, for dr
        saved = np.empty((N, T, H), dtype=xs.dtype)
        h, h_next = np.ascontiguousarray(h0), np.empty((N, H), dtype=xs.dtype)   # h_t, h_{t+1}
        step = self._steps_after(G, Wh, saved, hs) if self.reset_after else self._steps(G, Wh, saved, hs)
        for t in range(T):
            step(t, h, h_next)
            h, h_next = h_next, (h if t else np.empty_like(h))   # never overwrite the caller's h0
        self.h = h
        self.cache = (xs, h0, G, hs, saved)
        return hs

    def _steps(self, G, Wh, rhs, hs):
        """The book form's step t, h -> h_next."""
        N, _, H = hs.shape
        # Contiguous blocks, made once: CuPy copies a strided matmul operand
        # before every cuBLAS call, here it would be at every step.
        Whzr, Whh = np.ascontiguousarray(Wh[:, :2 * H]), np.ascontiguousarray(Wh[:, 2 * H:])
        hW = np.empty((N, 2 * H), dtype=hs.dtype)    # the recurrent products, reused
        rhW = np.empty((N, H), dtype=hs.dtype)
        rh = np.empty((N, H), dtype=hs.dtype)        # contiguous r ⊙ h of this step

        def step(t, h, h_next):
            g = G[:, t]
            # z, r = σ(x Wx{z,r} + b + h Wh{z,r});  rh = r ⊙ h
            z = kernels.gru_forward_zr(g[:, :2 * H], matmul(h, Whzr, out=hW), h, rhs[:, t], rh)
            # h̃ = tanh(x Wxh + bh + (r ⊙ h) Whh);  h' = h + z ⊙ (h̃ − h)
            kernels.gru_forward_h(g[:, 2 * H:], matmul(rh, Whh, out=rhW), z, h, hs[:, t], h_next)
        return step

    def _steps_after(self, G, Wh, hns, hs):
        """The reset-after form's step t, h -> h_next: one product h Wh."""
        N, _, H = hs.shape
        bh = self.params[3]
        G[:, :, :2 * H] += bh[:2 * H]               # z and r: x Wx + b + bh, once for all steps
        Wh = np.ascontiguousarray(Wh)
        hW = np.empty((N, 3 * H), dtype=hs.dtype)
        bhn = bh[2 * H:]

        def step(t, h, h_next):
            # z, r = σ(· + h Wh{z,r});  hn = h Whn + bhn;  h̃ = tanh(x Wxn + bn + r ⊙ hn);  h' = h + z ⊙ (h̃ − h)
            kernels.gru_forward_after(G[:, t], matmul(h, Wh, out=hW), bhn, h, hns[:, t], hs[:, t], h_next)
        return step

    def backward(self, dhs):
        Wh = self.params[1]
        xs, h0, G, hs, saved = self.cache
        N, T, H = hs.shape
        # Wh^T made contiguous once: the per-step products d Wh^T then read whole
        # rows, which BLAS does faster than through a transposed view.
        WhT = np.ascontiguousarray(Wh.T)
        h_prev = self._previous_states(h0, hs)
        dG = np.empty_like(G)                  # dz_pre | dr_pre | dh̃_pre per step
        dh = np.zeros_like(h0)                 # dL/dh_t, from above and from step t+1
        back = self._back_after if self.reset_after else self._back
        # dWhh = rowsᵀ d: rows r ⊙ h_{t-1} and d = dh̃_pre (book), h_{t-1} and dh̃_pre ⊙ r (reset after)
        hh_rows, dhh = back(dhs, G, dG, h_prev, saved, dh, WhT)
        self.dh = dh
        dG2 = dG.reshape(N * T, 3 * H)
        matmul(h_prev.reshape(N * T, H).T, dG2[:, :2 * H], out=self.grads[1][:, :2 * H])
        matmul(hh_rows.reshape(N * T, H).T, dhh.reshape(N * T, H), out=self.grads[1][:, 2 * H:])
        dxs = self._input_gradients(xs, dG)
        if self.reset_after:                   # dbh: db's z | r blocks, and Σ dh̃_pre ⊙ r
            dbh = self.grads[3]
            dbh[:2 * H] = self.grads[2][:2 * H]
            dhh.reshape(N * T, H).sum(axis=0, out=dbh[2 * H:])
        return dxs

    @staticmethod
    def _back(dhs, G, dG, h_prev, rhs, dh, WhT):
        """The book form's steps in reverse; returns (r ⊙ h_{t-1}, dh̃_pre) for dWhh."""
        N, T, H = dhs.shape
        WzrT, WhhT = WhT[:2 * H], WhT[2 * H:]
        drh = np.empty_like(dh)
        dW = np.empty_like(dh)
        dhh = np.empty_like(dh)                # contiguous copies of this step's dh̃_pre
        dzr = np.empty((N, 2 * H), dtype=dh.dtype)   # and [dz_pre | dr_pre], the products' operands
        scratch = (np.empty_like(dh), np.empty_like(dh))
        for t in reversed(range(T)):
            g, dg, hp = G[:, t], dG[:, t], h_prev[:, t]
            z, r, hh = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
            # dh̃_pre = dh ⊙ z ⊙ (1 − h̃²);  dz_pre = dh ⊙ (h̃ − h) ⊙ z ⊙ (1 − z)
            kernels.gru_backward_hz(dhs[:, t], z, hh, hp, dh, dg[:, 2 * H:], dg[:, :H], dhh, dzr[:, :H], scratch)
            matmul(dhh, WhhT, out=drh)      # d(r ⊙ h_{t-1})
            # dr_pre = drh ⊙ h ⊙ r ⊙ (1 − r);
            # dh_{t-1} = dh ⊙ (1 − z) + drh ⊙ r + [dz_pre | dr_pre] [Whz | Whr]^T
            kernels.gru_backward_r(drh, z, r, hp, dg[:, H:2 * H], dh, dzr[:, H:], scratch)
            matmul_add(dzr, WzrT, dh, dW)
        return rhs, dG[:, :, 2 * H:]

    @staticmethod
    def _back_after(dhs, G, dG, h_prev, hns, dh, WhT):
        """The reset-after form's steps in reverse; returns (h_{t-1}, dh̃_pre ⊙ r) for dWhh."""
        N, T, H = dhs.shape
        dnrs = np.empty_like(hns)              # dh̃_pre ⊙ r: the gradient of h Whh + bhh
        dW = np.empty_like(dh)
        dcat = np.empty((N, 3 * H), dtype=dh.dtype)   # [dz_pre | dr_pre | dh̃_pre ⊙ r], the product's operand
        scratch = (np.empty_like(dh), np.empty_like(dh))
        for t in reversed(range(T)):
            # dh̃_pre = dh ⊙ z ⊙ (1 − h̃²);  dz_pre = dh ⊙ (h̃ − h) ⊙ z ⊙ (1 − z);
            # dr_pre = dh̃_pre ⊙ (h Whh + bhh) ⊙ r ⊙ (1 − r);  dh_{t-1} = dh ⊙ (1 − z) + dcat Wh^T
            kernels.gru_backward_after(dhs[:, t], G[:, t], h_prev[:, t], hns[:, t], dh, dG[:, t], dcat,
                                       dnrs[:, t], scratch)
            matmul_add(dcat, WhT, dh, dW)
        return h_prev, dnrs


class _Cell:
    """One step of a Time recurrent layer: the layer itself, over the same
    parameter arrays, run with T = 1 from the state passed in. ``params``
    and ``grads`` are the Time layer's lists; each ``backward`` overwrites
    the gradients, as the book's cells do.

    forward(x (N, D), h_prev (N, H)) -> h_next (N, H);
    backward(dh_next) -> (dx, dh_prev).
    """

    Time = None

    def __init__(self, Wx, Wh, b, **options):
        self.time = self.Time(Wx, Wh, b, stateful=True, **options)
        self.params, self.grads = self.time.params, self.time.grads

    def _step(self, x, h_prev, *c_prev):
        if h_prev.shape[0] != x.shape[0]:
            raise ValueError(f'{type(self).__name__}.forward: h_prev has {h_prev.shape[0]} rows but x has '
                             f'{x.shape[0]}: pass the state of this batch')
        self.time.set_state(h_prev, *c_prev)
        return self.time.forward(x[:, None])[:, 0]

    def _step_back(self, dh_next, *dc_next):
        return self.time.backward(dh_next[:, None], *dc_next)[:, 0]

    def forward(self, x, h_prev):
        return self._step(x, h_prev)

    def backward(self, dh_next):
        dx = self._step_back(dh_next)
        return dx, self.time.dh


class RNN(_Cell):
    """One Elman step (:class:`TimeRNN` with T = 1):

        h_next = tanh(x Wx + h_prev Wh + b)

    Wx: (D, H), Wh: (H, H), b: (H,).
    forward(x (N, D), h_prev (N, H)) -> h_next (N, H);
    backward(dh_next) -> (dx, dh_prev).
    """

    Time = TimeRNN


class LSTM(_Cell):
    """One LSTM step (:class:`TimeLSTM` with T = 1), gate blocks f | g | i | o:

        c_next = f ⊙ c_prev + g ⊙ i      h_next = o ⊙ tanh(c_next)

    Wx: (D, 4H), Wh: (H, 4H), b: (4H,).
    forward(x (N, D), h_prev, c_prev (N, H)) -> (h_next, c_next);
    backward(dh_next, dc_next) -> (dx, dh_prev, dc_prev).
    """

    Time = TimeLSTM

    def forward(self, x, h_prev, c_prev):
        h_next = self._step(x, h_prev, c_prev)
        return h_next, self.time.c

    def backward(self, dh_next, dc_next):
        dx = self._step_back(dh_next, dc_next)
        return dx, self.time.dh, self.time.dc


class GRU(_Cell):
    """One GRU step (:class:`TimeGRU` with T = 1), gate blocks z | r | h̃:

        z = σ(x Wxz + h_prev Whz + bz)     r = σ(x Wxr + h_prev Whr + br)
        h̃ = tanh(x Wxh + (r ⊙ h_prev) Whh + bh)
        h_next = (1 − z) ⊙ h_prev + z ⊙ h̃

    ``GRU(Wx, Wh, b, reset_after=True, bh=None)``: PyTorch's form,
    h̃ = tanh(x Wxh + bh̃ + r ⊙ (h_prev Whh + bhh)), with the recurrent bias
    bh as a fourth parameter (see :class:`TimeGRU`).

    Wx: (D, 3H), Wh: (H, 3H), b: (3H,).
    forward(x (N, D), h_prev (N, H)) -> h_next (N, H);
    backward(dh_next) -> (dx, dh_prev).
    """

    Time = TimeGRU


class TimeBiLSTM:
    """Bidirectional LSTM: one :class:`TimeLSTM` (Wx1, Wh1, b1) reads xs
    forwards, the other (Wx2, Wh2, b2) reads it backwards, and each step's
    outputs are put side by side:

        hs = [ TimeLSTM1(xs) | reverse(TimeLSTM2(reverse(xs))) ]   (N, T, 2H)

    reverse flips the time axis. backward: dhs (N, T, 2H) is split into the
    two halves, dxs = dxs1 + reverse(dxs2). ``params`` and ``grads``: the
    forward layer's, then the backward layer's.
    """

    def __init__(self, Wx1, Wh1, b1, Wx2, Wh2, b2, stateful=False):
        self.forward_lstm = TimeLSTM(Wx1, Wh1, b1, stateful)
        self.backward_lstm = TimeLSTM(Wx2, Wh2, b2, stateful)
        self.params = self.forward_lstm.params + self.backward_lstm.params
        self.grads = self.forward_lstm.grads + self.backward_lstm.grads

    def forward(self, xs):
        o1 = self.forward_lstm.forward(xs)
        o2 = self.backward_lstm.forward(xs[:, ::-1])
        return np.concatenate((o1, o2[:, ::-1]), axis=2)

    def backward(self, dhs):
        H = dhs.shape[2] // 2
        dxs = self.forward_lstm.backward(dhs[:, :, :H])
        dxs += self.backward_lstm.backward(dhs[:, ::-1, H:])[:, ::-1]
        return dxs


class TimeEmbedding(Embedding):
    """Word vectors for a whole batch: out[n, t] = W[xs[n, t]].

    W: (V, D); xs: (N, T) ids -> (N, T, D). Backward scatter-adds into dW
    (repeated ids add up); see :class:`common.layers.Embedding`. ``W`` is
    the book's name for ``params[0]``.
    """

    W = property(lambda self: self.params[0])


class TimeAffine:
    """out = x W + b at every step. x: (N, T, D), W: (D, M), b: (M,) -> (N, T, M).

    ``W`` may be a transposed view of another parameter (weight tying); the
    gradient is then written straight into that parameter's gradient: as
    ``dW^T = dout^T x`` when ``grads[0]`` is a transposed view, so the
    product's output is contiguous (CuPy would otherwise multiply into a
    temporary and copy it over).
    """

    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x = None

    def forward(self, x):
        W, b = self.params
        N, T, D = x.shape
        self.x = x
        out = matmul(x.reshape(N * T, D), W)
        out += b
        return out.reshape(N, T, -1)

    def backward(self, dout):
        W, b = self.params
        N, T, D = self.x.shape
        dout = dout.reshape(N * T, -1)
        x = self.x.reshape(N * T, D)
        dW = self.grads[0]
        if dW.flags.c_contiguous:
            matmul(x.T, dout, out=dW)
        else:   # a transposed view (tying): write dW^T = dout^T x into its contiguous base
            matmul(dout.T, x, out=dW.T)
        dout.sum(axis=0, out=self.grads[1])
        return matmul(dout, W.T).reshape(N, T, D)


class TimeSoftmaxWithLoss:
    """Mean cross-entropy over all (n, t) whose label is not ``ignore_label``.

    xs: (N, T, V) scores, ts: (N, T) ids (or (N, T, V) one-hot). Returns the
    loss as a 0-d array of the backend (read it with float() when needed).

        loss = -(1/|M|) Σ_{(n,t)∈M} log softmax(xs[n, t])[ts[n, t]]
        dxs  = (softmax(xs) - onehot(ts)) / |M|   on M, 0 elsewhere

    log softmax is computed as x - max - log Σ exp(x - max): no overflow. The
    forward pass already stores softmax(x) scaled by each row's weight in the
    mean (1/|M|, or 0 for ignored rows), so backward only subtracts the
    weights at the targets; that buffer is the only (N·T, V) one made. The
    rows are processed in blocks that stay in the CPU cache (one block on
    the GPU), so max, exp, sum and scaling read memory once.
    """

    def __init__(self):
        self.params, self.grads = [], []
        self.cache = None
        self.ignore_label = -1

    def forward(self, xs, ts):
        N, T, V = xs.shape
        ts = np.asarray(ts)
        if ts.ndim == 3:  # one-hot labels
            ts = ts.argmax(axis=2)
        t = ts.reshape(N * T)
        mask = t != self.ignore_label
        t = np.where(mask, t, 0)               # any valid column for ignored rows
        rows = np.arange(N * T)
        x = xs.reshape(N * T, V)
        weight = (mask / np.maximum(mask.sum(), 1)).astype(x.dtype)   # 1/|M| on M, 0 elsewhere

        y = np.empty_like(x)
        lse = np.empty(N * T, dtype=x.dtype)    # log Σ exp(x) of each row
        for block in backend.row_blocks(N * T, V * x.itemsize):
            xb, yb = x[block], y[block]
            m = xb.max(axis=1, keepdims=True)
            np.subtract(xb, m, out=yb)
            np.exp(yb, out=yb)
            s = yb.sum(axis=1, keepdims=True)
            lse[block] = (m + np.log(s))[:, 0]
            yb *= weight[block, None] / s       # softmax(x) ⊙ weight
        loss = ((lse - x[rows, t]) * weight).sum()
        self.cache = (y, t, rows, weight, (N, T, V))
        return loss

    def backward(self, dout=1):
        y, t, rows, weight, shape = self.cache
        self.cache = None
        dx = y                                  # reuse the buffer in place
        dx[rows, t] -= weight
        if not (isinstance(dout, (int, float)) and dout == 1):
            dx *= dout
        return dx.reshape(shape)


class TimeDropout:
    """Inverted dropout over a whole sequence: out = xs ⊙ m / (1 - p) while
    ``train_flg`` is true, out = xs otherwise. m ~ Bernoulli(1 - p), drawn on
    the backend (see :func:`common.backend.seed`)."""

    def __init__(self, dropout_ratio=0.5):
        self.params, self.grads = [], []
        self.dropout_ratio = dropout_ratio
        self.mask = None
        self.train_flg = True

    def forward(self, xs):
        if not self.train_flg or self.dropout_ratio == 0:
            self.mask = None
            return xs
        self.mask = dropout_mask(xs.shape, self.dropout_ratio, xs.dtype)
        return xs * self.mask

    def backward(self, dout):
        return dout if self.mask is None else dout * self.mask


class _RowsLoss:
    """A loss layer of :mod:`common.layers` over all the rows of a sequence
    batch at once: the book's per-step loop averages the per-step means over
    T, which is the mean over all N·T rows."""

    def __init__(self, loss_layer):
        self.params, self.grads = [], []
        self.loss_layer = loss_layer
        self.xs_shape = None

    def backward(self, dout=1):
        return self.loss_layer.backward(dout).reshape(self.xs_shape)


class TimeSigmoidWithLoss(_RowsLoss):
    """Mean binary cross-entropy of σ(xs) against 0/1 labels ts over all
    N·T scores (:class:`common.layers.SigmoidWithLoss` at every step,
    averaged over T, as in the book). xs, ts: (N, T).

        loss = -(1/NT) Σ [t log σ(x) + (1 − t) log(1 − σ(x))]
        dxs  = (σ(xs) − ts) · dout / (N·T)
    """

    def __init__(self):
        super().__init__(SigmoidWithLoss())

    def forward(self, xs, ts):
        self.xs_shape = xs.shape
        return self.loss_layer.forward(xs.reshape(-1), ts.reshape(-1))


class Simple_TimeSoftmaxWithLoss(_RowsLoss):
    """The book's step-by-step TimeSoftmaxWithLoss: :class:`common.layers.SoftmaxWithLoss`
    at every step, averaged over T, i.e. over all N·T rows. It has no
    ``ignore_label`` (a label -1 is the last class, as in the book).
    xs: (N, T, V), ts: (N, T) ids or (N, T, V) one-hot.

        loss = -(1/NT) Σ_{n,t} log softmax(xs[n, t])[ts[n, t]]
        dxs  = (softmax(xs) − onehot(ts)) · dout / (N·T)
    """

    def __init__(self):
        super().__init__(SoftmaxWithLoss())

    def forward(self, xs, ts):
        N, T, V = xs.shape
        self.xs_shape = xs.shape
        ts = ts.reshape(N * T, V) if ts.ndim == 3 else ts.reshape(N * T)
        return self.loss_layer.forward(xs.reshape(N * T, V), ts)


class Simple_TimeAffine(TimeAffine):
    """The book's step-by-step TimeAffine: out[:, t] = xs[:, t] W + b for every t,

        dW = Σ_t xs[:, t]ᵀ dout[:, t],  db = Σ_t Σ_n dout[n, t],  dxs[:, t] = dout[:, t] Wᵀ

    which is :class:`TimeAffine`'s one product over all N·T rows. The book's
    names ``W``, ``b``, ``dW``, ``db`` are the arrays of ``params`` and ``grads``.
    """

    W = property(lambda self: self.params[0])
    b = property(lambda self: self.params[1])
    dW = property(lambda self: self.grads[0])
    db = property(lambda self: self.grads[1])

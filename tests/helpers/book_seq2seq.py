"""The seq2seq models of the book's chapters 7 and 8, written the way its
readers write them against its ``common/``: plain classes holding Time
layers, ``params``/``grads`` gathered from the layers, the models subclassing
``BaseModel`` without calling its ``__init__``, the attention layers one
``Attention`` object per decoder step. Used by tests/test_book_seq2seq.py to
run the chapters' flows (train_seq2seq.py, ch08/train.py) on this framework.

- :class:`Seq2seq`: an LSTM encoder whose last hidden state starts an LSTM
  decoder (teacher forcing: the decoder reads the answer shifted by one).
- :class:`PeekySeq2seq`: the encoder's state is also fed, at every step,
  into the decoder's LSTM and affine layer (concatenated in front).
- :class:`AttentionSeq2seq`: the decoder attends over all encoder states:
  a = softmax(hs · h), c = Σ_t a_t hs_t, score = [c, h] W + b.

One spelling differs from the book's: the peeky and attention decoders turn the
last step's id (a 0-d array from ``np.argmax``) into the next input with
``np.array(id)``, as the book's plain Decoder does, where the book writes
``np.array([id])``. CuPy accepts device arrays inside a list; the stand-in CuPy
of the tests refuses it, and the GPU-path test runs these models through it.
"""
from common.time_layers import *  # noqa: F401,F403
from common.np import np
from common.time_layers import TimeAffine, TimeEmbedding, TimeLSTM, TimeSoftmaxWithLoss
from common.layers import Softmax
from common.base_model import BaseModel


def _weights(rows, cols, dtype):
    """The book's initialisation: randn / sqrt(fan-in)."""
    return (np.random.randn(rows, cols) / np.sqrt(rows)).astype(dtype)


# -- chapter 7 ------------------------------------------------------------------------

class Encoder:
    """Embedding -> LSTM; forward returns the last hidden state (N, H)."""

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype='f'):
        V, D, H = vocab_size, wordvec_size, hidden_size
        self.embed = TimeEmbedding((np.random.randn(V, D) / 100).astype(dtype))
        self.lstm = TimeLSTM(_weights(D, 4 * H, dtype), _weights(H, 4 * H, dtype),
                             np.zeros(4 * H).astype(dtype), stateful=False)
        self.params = self.embed.params + self.lstm.params
        self.grads = self.embed.grads + self.lstm.grads
        self.hs = None

    def forward(self, xs):
        hs = self.lstm.forward(self.embed.forward(xs))
        self.hs = hs
        return hs[:, -1, :]

    def backward(self, dh):
        dhs = np.zeros_like(self.hs)
        dhs[:, -1, :] = dh                      # only the last state went on
        dout = self.lstm.backward(dhs)
        return self.embed.backward(dout)


class Decoder:
    """Embedding -> LSTM (started from the encoder's h) -> Affine."""

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype='f'):
        V, D, H = vocab_size, wordvec_size, hidden_size
        self.embed = TimeEmbedding((np.random.randn(V, D) / 100).astype(dtype))
        self.lstm = TimeLSTM(_weights(D, 4 * H, dtype), _weights(H, 4 * H, dtype),
                             np.zeros(4 * H).astype(dtype), stateful=True)
        self.affine = TimeAffine(_weights(H, V, dtype), np.zeros(V).astype(dtype))
        self.params, self.grads = [], []
        for layer in (self.embed, self.lstm, self.affine):
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, xs, h):
        self.lstm.set_state(h)
        out = self.lstm.forward(self.embed.forward(xs))
        return self.affine.forward(out)

    def backward(self, dscore):
        dout = self.affine.backward(dscore)
        dout = self.lstm.backward(dout)
        self.embed.backward(dout)
        return self.lstm.dh                     # the gradient of the encoder's state

    def generate(self, h, start_id, sample_size):
        """Greedy decoding: each step feeds back the argmax of the last."""
        sampled = []
        sample_id = start_id
        self.lstm.set_state(h)
        for _ in range(sample_size):
            x = np.array(sample_id).reshape((1, 1))
            score = self.affine.forward(self.lstm.forward(self.embed.forward(x)))
            sample_id = np.argmax(score.flatten())
            sampled.append(int(sample_id))
        return sampled


class Seq2seq(BaseModel):
    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype='f'):
        args = vocab_size, wordvec_size, hidden_size, dtype
        self.encoder = Encoder(*args)
        self.decoder = Decoder(*args)
        self.softmax = TimeSoftmaxWithLoss()
        self.params = self.encoder.params + self.decoder.params
        self.grads = self.encoder.grads + self.decoder.grads

    def forward(self, xs, ts):
        decoder_xs, decoder_ts = ts[:, :-1], ts[:, 1:]
        h = self.encoder.forward(xs)
        score = self.decoder.forward(decoder_xs, h)
        return self.softmax.forward(score, decoder_ts)

    def backward(self, dout=1):
        dout = self.softmax.backward(dout)
        dh = self.decoder.backward(dout)
        return self.encoder.backward(dh)

    def generate(self, xs, start_id, sample_size):
        h = self.encoder.forward(xs)
        return self.decoder.generate(h, start_id, sample_size)


class PeekyDecoder:
    """The decoder that sees the encoder's h at every step: LSTM input
    [h, embedding] (H + D), affine input [h, LSTM output] (2H)."""

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype='f'):
        V, D, H = vocab_size, wordvec_size, hidden_size
        self.embed = TimeEmbedding((np.random.randn(V, D) / 100).astype(dtype))
        self.lstm = TimeLSTM(_weights(H + D, 4 * H, dtype), _weights(H, 4 * H, dtype),
                             np.zeros(4 * H).astype(dtype), stateful=True)
        self.affine = TimeAffine(_weights(H + H, V, dtype), np.zeros(V).astype(dtype))
        self.params, self.grads = [], []
        for layer in (self.embed, self.lstm, self.affine):
            self.params += layer.params
            self.grads += layer.grads
        self.cache = None

    def forward(self, xs, h):
        N, T = xs.shape
        N, H = h.shape
        self.lstm.set_state(h)
        out = self.embed.forward(xs)
        hs = np.repeat(h, T, axis=0).reshape(N, T, H)
        out = self.lstm.forward(np.concatenate((hs, out), axis=2))
        score = self.affine.forward(np.concatenate((hs, out), axis=2))
        self.cache = H
        return score

    def backward(self, dscore):
        H = self.cache
        dout = self.affine.backward(dscore)
        dout, dhs0 = dout[:, :, H:], dout[:, :, :H]
        dout = self.lstm.backward(dout)
        dembed, dhs1 = dout[:, :, H:], dout[:, :, :H]
        self.embed.backward(dembed)
        return self.lstm.dh + np.sum(dhs0 + dhs1, axis=1)

    def generate(self, h, start_id, sample_size):
        sampled = []
        char_id = start_id
        self.lstm.set_state(h)
        peeky_h = h.reshape(1, 1, h.shape[1])
        for _ in range(sample_size):
            x = np.array(char_id).reshape((1, 1))   # the book: np.array([char_id]), see the module's note
            out = self.embed.forward(x)
            out = self.lstm.forward(np.concatenate((peeky_h, out), axis=2))
            score = self.affine.forward(np.concatenate((peeky_h, out), axis=2))
            char_id = np.argmax(score.flatten())
            sampled.append(char_id)             # a 0-d array, as in the book: eval_seq2seq takes int() of it
        return sampled


class PeekySeq2seq(Seq2seq):
    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype='f'):
        args = vocab_size, wordvec_size, hidden_size, dtype
        self.encoder = Encoder(*args)
        self.decoder = PeekyDecoder(*args)
        self.softmax = TimeSoftmaxWithLoss()
        self.params = self.encoder.params + self.decoder.params
        self.grads = self.encoder.grads + self.decoder.grads


# -- chapter 8 ------------------------------------------------------------------------

class WeightSum:
    """c = Σ_t a_t hs_t: hs (N, T, H), a (N, T) -> c (N, H)."""

    def __init__(self):
        self.params, self.grads = [], []
        self.cache = None

    def forward(self, hs, a):
        N, T, H = hs.shape
        ar = a.reshape(N, T, 1)
        self.cache = (hs, ar)
        return np.sum(hs * ar, axis=1)

    def backward(self, dc):
        hs, ar = self.cache
        N, T, H = hs.shape
        dt = dc.reshape(N, 1, H).repeat(T, axis=1)
        dhs = dt * ar
        da = np.sum(dt * hs, axis=2)
        return dhs, da


class AttentionWeight:
    """a = softmax_t(hs_t · h): hs (N, T, H), h (N, H) -> a (N, T)."""

    def __init__(self):
        self.params, self.grads = [], []
        self.softmax = Softmax()
        self.cache = None

    def forward(self, hs, h):
        N, T, H = hs.shape
        hr = h.reshape(N, 1, H)
        s = np.sum(hs * hr, axis=2)
        self.cache = (hs, hr)
        return self.softmax.forward(s)

    def backward(self, da):
        hs, hr = self.cache
        N, T, H = hs.shape
        ds = self.softmax.backward(da)
        dt = ds.reshape(N, T, 1).repeat(H, axis=2)
        dhs = dt * hr
        dh = np.sum(dt * hs, axis=1)
        return dhs, dh


class Attention:
    """The context vector of one decoder step: WeightSum(hs, AttentionWeight(hs, h))."""

    def __init__(self):
        self.params, self.grads = [], []
        self.attention_weight_layer = AttentionWeight()
        self.weight_sum_layer = WeightSum()
        self.attention_weight = None

    def forward(self, hs, h):
        a = self.attention_weight_layer.forward(hs, h)
        self.attention_weight = a
        return self.weight_sum_layer.forward(hs, a)

    def backward(self, dout):
        dhs0, da = self.weight_sum_layer.backward(dout)
        dhs1, dh = self.attention_weight_layer.backward(da)
        return dhs0 + dhs1, dh


class TimeAttention:
    """One Attention per decoder step: hs_enc (N, T_enc, H), hs_dec (N, T, H) -> (N, T, H)."""

    def __init__(self):
        self.params, self.grads = [], []
        self.layers = None
        self.attention_weights = None

    def forward(self, hs_enc, hs_dec):
        N, T, H = hs_dec.shape
        out = np.empty_like(hs_dec)
        self.layers, self.attention_weights = [], []
        for t in range(T):
            layer = Attention()
            out[:, t, :] = layer.forward(hs_enc, hs_dec[:, t, :])
            self.layers.append(layer)
            self.attention_weights.append(layer.attention_weight)
        return out

    def backward(self, dout):
        N, T, H = dout.shape
        dhs_enc = 0
        dhs_dec = np.empty_like(dout)
        for t in range(T):
            dhs, dh = self.layers[t].backward(dout[:, t, :])
            dhs_enc += dhs
            dhs_dec[:, t, :] = dh
        return dhs_enc, dhs_dec


class AttentionEncoder(Encoder):
    """The encoder that hands on all its hidden states (N, T, H)."""

    def forward(self, xs):
        return self.lstm.forward(self.embed.forward(xs))

    def backward(self, dhs):
        return self.embed.backward(self.lstm.backward(dhs))


class AttentionDecoder:
    """Embedding -> LSTM (from the encoder's last state) -> TimeAttention over
    the encoder's states -> Affine of [context, LSTM output] (2H)."""

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype='f'):
        V, D, H = vocab_size, wordvec_size, hidden_size
        self.embed = TimeEmbedding((np.random.randn(V, D) / 100).astype(dtype))
        self.lstm = TimeLSTM(_weights(D, 4 * H, dtype), _weights(H, 4 * H, dtype),
                             np.zeros(4 * H).astype(dtype), stateful=True)
        self.attention = TimeAttention()
        self.affine = TimeAffine(_weights(2 * H, V, dtype), np.zeros(V).astype(dtype))
        self.params, self.grads = [], []
        for layer in (self.embed, self.lstm, self.attention, self.affine):
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, xs, enc_hs):
        self.lstm.set_state(enc_hs[:, -1])
        dec_hs = self.lstm.forward(self.embed.forward(xs))
        c = self.attention.forward(enc_hs, dec_hs)
        return self.affine.forward(np.concatenate((c, dec_hs), axis=2))

    def backward(self, dscore):
        dout = self.affine.backward(dscore)
        H = dout.shape[2] // 2
        dc, ddec_hs0 = dout[:, :, :H], dout[:, :, H:]
        denc_hs, ddec_hs1 = self.attention.backward(dc)
        dout = self.lstm.backward(ddec_hs0 + ddec_hs1)
        denc_hs[:, -1] += self.lstm.dh
        self.embed.backward(dout)
        return denc_hs

    def generate(self, enc_hs, start_id, sample_size):
        sampled = []
        sample_id = start_id
        self.lstm.set_state(enc_hs[:, -1])
        for _ in range(sample_size):
            x = np.array(sample_id).reshape((1, 1))
            dec_hs = self.lstm.forward(self.embed.forward(x))
            c = self.attention.forward(enc_hs, dec_hs)
            score = self.affine.forward(np.concatenate((c, dec_hs), axis=2))
            sample_id = np.argmax(score.flatten())
            sampled.append(sample_id)
        return sampled


class AttentionSeq2seq(Seq2seq):
    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype='f'):
        args = vocab_size, wordvec_size, hidden_size, dtype
        self.encoder = AttentionEncoder(*args)
        self.decoder = AttentionDecoder(*args)
        self.softmax = TimeSoftmaxWithLoss()
        self.params = self.encoder.params + self.decoder.params
        self.grads = self.encoder.grads + self.decoder.grads

"""Models written the way the book writes them, as its readers' code does:
no ``super().__init__()``, layers in a list, ``params``/``grads`` gathered
from the layers, weight tying by handing ``embed_W.T`` to the output layer
(so the tied weight is listed twice, with two gradients). Used by
tests/test_book_clients.py and tests/book_script.py; the helpers at the end
build the same model the framework's way for comparison."""
from common.np import *  # noqa: F401,F403
from common.base_model import BaseModel
from common.time_layers import (TimeAffine, TimeDropout, TimeEmbedding, TimeLSTM, TimeRNN,
                                TimeSoftmaxWithLoss)


class PlainRnnLm:
    """Embedding -> RNN -> Affine; not a BaseModel, no dropout, no train_flg."""

    def __init__(self, vocab_size, wordvec_size, hidden_size):
        V, D, H = vocab_size, wordvec_size, hidden_size
        randn = np.random.randn

        self.layers = [
            TimeEmbedding((randn(V, D) / 100).astype('f')),
            TimeRNN((randn(D, H) / np.sqrt(D)).astype('f'), (randn(H, H) / np.sqrt(H)).astype('f'),
                    np.zeros(H).astype('f'), stateful=True),
            TimeAffine((randn(H, V) / np.sqrt(H)).astype('f'), np.zeros(V).astype('f')),
        ]
        self.loss_layer = TimeSoftmaxWithLoss()
        self.rnn_layer = self.layers[1]

        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, xs, ts):
        for layer in self.layers:
            xs = layer.forward(xs)
        return self.loss_layer.forward(xs, ts)

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def reset_state(self):
        self.rnn_layer.reset_state()


class TiedLstmLm(BaseModel):
    """Embedding -> Dropout -> LSTM -> Dropout -> Affine tied to the embedding."""

    def __init__(self, vocab_size=50, wordvec_size=8, hidden_size=8, dropout_ratio=0.5, dtype='f'):
        V, D, H = vocab_size, wordvec_size, hidden_size
        randn = np.random.randn

        embed_W = (randn(V, D) / 100).astype(dtype)
        Wx = (randn(D, 4 * H) / np.sqrt(D)).astype(dtype)
        Wh = (randn(H, 4 * H) / np.sqrt(H)).astype(dtype)
        b = np.zeros(4 * H).astype(dtype)
        affine_b = np.zeros(V).astype(dtype)

        self.layers = [
            TimeEmbedding(embed_W),
            TimeDropout(dropout_ratio),
            TimeLSTM(Wx, Wh, b, stateful=True),
            TimeDropout(dropout_ratio),
            TimeAffine(embed_W.T, affine_b),        # the output layer shares the embedding
        ]
        self.loss_layer = TimeSoftmaxWithLoss()
        self.lstm_layer = self.layers[2]
        self.drop_layers = [self.layers[1], self.layers[3]]

        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def predict(self, xs, train_flg=False):
        for layer in self.drop_layers:
            layer.train_flg = train_flg
        for layer in self.layers:
            xs = layer.forward(xs)
        return xs

    def forward(self, xs, ts, train_flg=True):
        score = self.predict(xs, train_flg)
        return self.loss_layer.forward(score, ts)

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def reset_state(self):
        self.lstm_layer.reset_state()


# -- the same model declared the framework's way ------------------------------------

#: indices of TiedLstmLm's listing (embed_W, Wx, Wh, b, embed_W.T, affine_b) that are distinct arrays
DISTINCT = [0, 1, 2, 3, 5]


def twin_models(vocab_size=30, size=6, dropout_ratio=0.5):
    """A TiedLstmLm and a framework Rnnlm (one LSTM layer, tied, float64)
    holding the same weights."""
    from ch_gru.rnnlm import Rnnlm
    book = TiedLstmLm(vocab_size, size, size, dropout_ratio, dtype='d')
    framework = Rnnlm(vocab_size, size, size, num_layers=1, dropout_ratio=dropout_ratio, cell='lstm',
                      tie_weights=True, dtype='float64')
    assert len(book.params) == 6 and len(framework.params) == 5
    for i, q in zip(DISTINCT, framework.params):
        book.params[i][...] = q
    return book, framework


def train_steps(model, optimizer, corpus, max_grad, seed=3):
    """A few iterations of RnnlmTrainer.fit with the dropout masks seeded."""
    from common import backend
    from common.trainer import RnnlmTrainer
    backend.seed(seed)
    trainer = RnnlmTrainer(model, optimizer)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=3, time_size=5, max_grad=max_grad,
                eval_interval=0)
    return trainer


def step_difference(optimizer_class, lr, max_grad, corpus):
    """Largest difference between the weights of the book-style model and
    of the framework's model after the same training steps (0 when the book's
    listing of the tied weight is treated as one parameter)."""
    from common import backend
    book, framework = twin_models()
    start = backend.asnumpy(framework.params[0]).copy()
    train_steps(book, optimizer_class(lr), corpus, max_grad)
    train_steps(framework, optimizer_class(lr), corpus, max_grad)
    moved = float(abs(backend.asnumpy(framework.params[0]) - start).max())
    embed, affine = book.layers[0].params[0], book.layers[-1].params[0]
    weights = [embed] + [p for layer in book.layers[1:] for p in layer.params]
    weights = [weights[i] for i in DISTINCT]
    diff = max(float(abs(backend.asnumpy(p) - backend.asnumpy(q)).max())
               for p, q in zip(weights, framework.params))
    still_tied = bool((backend.asnumpy(affine) == backend.asnumpy(embed).T).all())
    return diff, moved, still_tied

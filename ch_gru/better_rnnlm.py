"""BetterRnnlm: the book's chapter-6 model with GRU layers, as the book's GRU appendix suggests."""
from ch_gru.rnnlm import Rnnlm


class BetterRnnlm(Rnnlm):
    """Embedding → Dropout → TimeGRU → Dropout → TimeGRU → Dropout → TimeAffine
    (tied to the embedding) → TimeSoftmaxWithLoss, with the book's signature
    and defaults. ``cell='lstm'`` builds the same model with the book's LSTM
    layers, for the GRU-vs-LSTM comparison. ``regularisation``: the options
    of :class:`ch_gru.rnnlm.Rnnlm` (locked dropout, embedding dropout, weight
    drop, AR/TAR), all off by default. ``reset_after=True``: PyTorch's form
    of the GRU (see :class:`ch_gru.rnnlm.Rnnlm`)."""

    def __init__(self, vocab_size=10000, wordvec_size=650, hidden_size=650, dropout_ratio=0.5,
                 cell='gru', dtype='float32', reset_after=False, **regularisation):
        super().__init__(vocab_size, wordvec_size, hidden_size, num_layers=2, dropout_ratio=dropout_ratio,
                         cell=cell, tie_weights=True, dtype=dtype, reset_after=reset_after, **regularisation)
        # The book's attribute names.
        self.lstm_layers = self.rnn_layers
        self.drop_layers = self.dropouts

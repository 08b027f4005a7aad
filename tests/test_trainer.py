"""RnnlmTrainer and Trainer (common.trainer) on hand-checkable inputs: the book's batching, the
report line, stops, divergence, the update step; remove_duplicate against the book's scan."""
import math

import numpy as np
import pytest

from common.errors import DataError
from common.optimizer import SGD, Adam
from common.run.parts import CtrlC, DivergenceWatch, ProgressBar
from common.trainer import RnnlmTrainer, Trainer, remove_duplicate
from common.util import eval_perplexity
from ch_gru.rnnlm import Rnnlm
from helpers.fakes import Recorder


def test_get_batch_follows_the_book():
    xs = np.arange(100)
    trainer = RnnlmTrainer(Recorder(0.0), SGD(0.1))
    trainer.time_idx = 0
    bx, bt = trainer.get_batch(xs, xs + 1000, batch_size=4, time_size=5)
    np.testing.assert_array_equal(bx, [[0, 1, 2, 3, 4], [25, 26, 27, 28, 29], [50, 51, 52, 53, 54],
                                       [75, 76, 77, 78, 79]])
    np.testing.assert_array_equal(bt, bx + 1000)
    for _ in range(4):
        bx, _ = trainer.get_batch(xs, xs, batch_size=4, time_size=5)
    # the fifth window of row 3 wraps around the end of the corpus
    np.testing.assert_array_equal(bx[3], [95, 96, 97, 98, 99])
    bx, _ = trainer.get_batch(xs, xs, batch_size=4, time_size=5)
    np.testing.assert_array_equal(bx[3], [0, 1, 2, 3, 4])


def book_get_batch(x, t, batch_size, time_size, time_idx):
    """The book's double loop, for comparison."""
    data_size = len(x)
    jump = data_size // batch_size
    offsets = [i * jump for i in range(batch_size)]
    bx = np.empty((batch_size, time_size), dtype='i')
    bt = np.empty((batch_size, time_size), dtype='i')
    for time in range(time_size):
        for i, offset in enumerate(offsets):
            bx[i, time] = x[(offset + time_idx) % data_size]
            bt[i, time] = t[(offset + time_idx) % data_size]
        time_idx += 1
    return bx, bt


def test_get_batch_equals_the_book_double_loop(rng):
    corpus = rng.integers(0, 50, 997)
    xs, ts = corpus[:-1], corpus[1:]
    trainer = RnnlmTrainer(Recorder(0.0), SGD(0.1))
    trainer.time_idx = 0
    for step in range(30):
        ours = trainer.get_batch(xs, ts, 7, 11)
        book = book_get_batch(xs, ts, 7, 11, step * 11)
        np.testing.assert_array_equal(ours[0], book[0])
        np.testing.assert_array_equal(ours[1], book[1])


def uniform_model(V=7):
    np.random.seed(0)
    model = Rnnlm(V, 4, 4, num_layers=2, dropout_ratio=0.0, dtype='float64')
    for p in model.params:
        p[...] = 0      # zero weights: every prediction is uniform over V words
    return model


def test_trainer_perplexity_of_a_uniform_model(capsys):
    V = 7
    model = uniform_model(V)
    corpus = np.random.default_rng(0).integers(0, V, 201)
    trainer = RnnlmTrainer(model, SGD(0.0))
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=2, batch_size=2, time_size=5, eval_interval=4)
    assert trainer.ppl_list == pytest.approx([V] * len(trainer.ppl_list))
    assert len(trainer.ppl_list) == 2 * 5          # 20 iterations, a report at 0, 4, ..., 16
    assert trainer.epoch_ppl == pytest.approx(V)
    assert eval_perplexity(model, corpus, batch_size=4, time_size=5) == pytest.approx(V)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('| epoch 1 | iter 1 / 20 | time 0[s] | perplexity 7.00 | ')
    assert lines[0].endswith(' tok/s')
    assert lines[-1].startswith('| epoch 2 | iter 17 / 20 |')


def test_trainer_learns_a_repeating_pattern():
    np.random.seed(0)
    model = Rnnlm(5, 8, 8, num_layers=1, dropout_ratio=0.0)
    corpus = np.tile(np.arange(5), 200)
    trainer = RnnlmTrainer(model, Adam(0.05))
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=5, batch_size=4, time_size=10, max_grad=5.0,
                eval_interval=0)
    assert trainer.epoch_ppl < 1.1
    model.reset_state()
    assert eval_perplexity(model, corpus, batch_size=2, time_size=10) < 1.1


def test_trainer_rejects_a_corpus_shorter_than_one_batch():
    with pytest.raises(DataError, match='at least 701 tokens'):
        RnnlmTrainer(uniform_model(), SGD(1.0)).fit(np.zeros(500, int), np.zeros(500, int))


def test_trainer_plot_writes_png(tmp_path):
    trainer = RnnlmTrainer(uniform_model(), SGD(0.0))
    corpus = np.zeros(101, dtype=int)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5, eval_interval=1)
    path = trainer.plot(str(tmp_path / 'ppl.png'))
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


class HostReads:
    """A loss that counts how often the host reads it (float()), as a GPU
    scalar would cost a device synchronisation each time."""
    reads = 0

    def __init__(self, value):
        self.value = value

    def __add__(self, other):
        return HostReads(self.value + (other.value if isinstance(other, HostReads) else other))

    __radd__ = __add__

    def __float__(self):
        HostReads.reads += 1
        return float(self.value)


class Scripted(Recorder):
    """Returns ``losses[i]`` at iteration i as a HostReads scalar."""

    def __init__(self, losses):
        super().__init__(0.0)
        self.losses = list(losses)

    def forward(self, xs, ts, train_flg=True):
        return HostReads(self.losses[len(self.batches.append((xs, ts, train_flg)) or self.batches) - 1])


def test_non_finite_loss_is_found_at_the_next_report_without_per_iteration_reads(capsys):
    corpus = np.arange(201)
    losses = [1.0] * 20
    losses[7] = float('nan')
    HostReads.reads = 0
    trainer = RnnlmTrainer(Scripted(losses), SGD(0.1))
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5, eval_interval=5)
    assert trainer.stopped == ('diverged', 11)  # reports at iterations 1, 6, 11: seen at 11
    assert HostReads.reads == 3                 # one read per report, none in between
    assert trainer.current_epoch == 0 and trainer.epoch_ppl is None
    assert capsys.readouterr().out.splitlines()[-1] == ('| epoch 1 | iter 11 / 20 | non-finite loss or gradient '
                                                        'norm: training stopped; lower the learning rate or clip '
                                                        'gradients')

    HostReads.reads = 0
    losses[7], losses[18] = 1.0, float('inf')
    trainer = RnnlmTrainer(Scripted(losses), SGD(0.1))
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5, eval_interval=0)
    assert trainer.stopped == ('diverged', 20) and HostReads.reads == 1      # at the end of the epoch

    capsys.readouterr()
    # the epoch loop says what it does about it instead
    trainer = RnnlmTrainer(Scripted(losses), SGD(0.1), parts=[DivergenceWatch(say=False)])
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5, eval_interval=0)
    assert trainer.stopped == ('diverged', 20) and capsys.readouterr().out == ''

    HostReads.reads = 0
    losses[18] = 1.0
    trainer = RnnlmTrainer(Scripted(losses), SGD(0.1))
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5, eval_interval=0)
    assert trainer.stopped is None and trainer.current_epoch == 1 and HostReads.reads == 1
    assert trainer.epoch_ppl == pytest.approx(math.e)


def test_non_finite_gradient_norm_is_found():
    class InfGradient(Scripted):        # finite losses; the gradient of iteration 4 overflows
        def backward(self, dout=1):
            self.grads[0][...] = np.inf if len(self.batches) == 4 else 1.0

    corpus = np.arange(201)
    trainer = RnnlmTrainer(InfGradient([1.0] * 20), SGD(0.1))
    with np.errstate(invalid='ignore'):
        trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5, max_grad=1.0,
                    eval_interval=3)
    assert trainer.stopped == ('diverged', 4)   # reports at iterations 1, 4: seen at 4


class StopAfter(SGD):
    """SGD that asks the trainer to stop after ``n`` updates, as Ctrl-C does."""

    def __init__(self, lr, n):
        super().__init__(lr)
        self.n, self.ctrl_c = n, CtrlC()

    def update(self, params, grads):
        super().update(params, grads)
        self.n -= 1
        if self.n == 0:
            self.ctrl_c.handler(None, None)

    def trainer(self, model):
        return RnnlmTrainer(model, self, parts=[ProgressBar(), DivergenceWatch(), self.ctrl_c])


def test_stop_then_start_mid_epoch_equals_an_uninterrupted_epoch():
    from common import backend
    corpus = np.random.default_rng(0).integers(0, 9, 401)

    def model():
        np.random.seed(3)
        backend.seed(3)
        return Rnnlm(9, 6, 6, num_layers=2, dropout_ratio=0.3, cell='lstm')

    whole = RnnlmTrainer(model(), SGD(1.0))
    whole.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=5, max_grad=1.0, eval_interval=0)

    opt = StopAfter(1.0, 7)
    parts = opt.trainer(model())
    parts.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=5, max_grad=1.0, eval_interval=0)
    assert parts.stopped == ('interrupt', 7) and parts.current_epoch == 0 and parts.epoch_ppl is None
    done_loss = float(parts.epoch_total)
    opt.ctrl_c.requested = False
    parts.start = (7, done_loss)
    parts.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=5, max_grad=1.0, eval_interval=0)
    assert parts.stopped is None and parts.current_epoch == 1
    for p, q in zip(whole.model.params, parts.model.params):
        np.testing.assert_array_equal(p, q)
    assert parts.epoch_ppl == whole.epoch_ppl


def test_stop_on_the_last_iteration_completes_the_epoch():
    ctrl_c = CtrlC()
    trainer = RnnlmTrainer(Recorder(1.0), SGD(0.1), parts=[ctrl_c])
    ctrl_c.requested = True
    corpus = np.arange(21)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=10, eval_interval=0)
    assert trainer.stopped is None and trainer.current_epoch == 1      # one iteration: nothing cut


def test_a_stop_after_a_non_finite_loss_reports_divergence_not_a_stop():
    corpus = np.arange(201)
    losses = [1.0] * 20
    losses[2] = float('nan')
    opt = StopAfter(0.1, 4)
    trainer = opt.trainer(Scripted(losses))
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5, eval_interval=0)
    assert trainer.stopped == ('diverged', 4)


def test_stop_keeps_the_first_reason_but_a_divergence_replaces_any_other():
    trainer = RnnlmTrainer(Recorder(1.0), SGD(0.1))
    trainer.first, trainer.done = 2, 3
    trainer.stop('time')
    trainer.stop('interrupt')
    assert trainer.stopped == ('time', 5)                    # first reason wins; at: the iterations done
    trainer.stop('diverged')
    assert trainer.stopped == ('diverged', 5)                # the epoch of that stop diverged
    trainer.stop('diverged', at=9)
    trainer.stop('interrupt')
    assert trainer.stopped == ('diverged', 5)                # a divergence is never replaced
    trainer.stopped = None
    trainer.stop('interrupt', at=4)
    assert trainer.stopped == ('interrupt', 4)


def test_a_ctrl_c_stop_on_an_epoch_that_diverged_becomes_a_divergence():
    class NanAfter(Scripted):            # finite losses, the parameters go bad with the Ctrl-C
        def backward(self, dout=1):
            if len(self.batches) == 3:
                self.params[0][...] = np.nan

    corpus = np.arange(201)
    opt = StopAfter(0.1, 3)
    trainer = RnnlmTrainer(NanAfter([1.0] * 20), opt, parts=[opt.ctrl_c, DivergenceWatch(say=False)])
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5, eval_interval=0)
    assert trainer.stopped == ('diverged', 3) and trainer.current_epoch == 0


def test_fit_updates_through_the_trainers_update():
    class Counting(RnnlmTrainer):
        updates = 0

        def update(self):
            Counting.updates += 1
            super().update()

    corpus = np.arange(201)
    Counting(Recorder(1.0), SGD(0.1)).fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5,
                                          eval_interval=0)
    assert Counting.updates == 20


# -- Trainer: the book's loop over independent samples (chapters 1-4, 7-8) ----------

class Losses(Recorder):
    """A Recorder whose loss is the mean of the batch's targets."""

    def __init__(self):
        super().__init__(0.0)

    def forward(self, xs, ts):
        self.batches.append((xs.copy(), ts.copy(), None))
        return float(ts.mean())


def test_trainer_batches_are_the_books_shuffles(capsys):
    x = np.arange(23) * 10
    t = np.arange(23)
    model = Losses()
    np.random.seed(3)
    Trainer(model, SGD(0.1)).fit(x, t, max_epoch=2, batch_size=5, eval_interval=None)
    np.random.seed(3)
    expected = []
    bx, bt = x, t
    for _ in range(2):                               # the book reshuffles the shuffled copy
        idx = np.random.permutation(np.arange(23))
        bx, bt = bx[idx], bt[idx]
        expected += [(bx[i * 5:(i + 1) * 5], bt[i * 5:(i + 1) * 5]) for i in range(23 // 5)]
    assert len(model.batches) == len(expected) == 8
    for (xs, ts, _), (ex, et) in zip(model.batches, expected):
        np.testing.assert_array_equal(xs, ex)
        np.testing.assert_array_equal(ts, et)
    assert capsys.readouterr().out == ''             # eval_interval=None: no report


def test_trainer_report_lines_and_loss_list(capsys):
    t = np.arange(12).astype(float)
    model = Losses()
    np.random.seed(0)
    trainer = Trainer(model, SGD(0.1))
    trainer.fit(t, t, max_epoch=2, batch_size=4, eval_interval=2)
    losses = [float(ts.mean()) for _, ts, _ in model.batches]          # 3 per epoch
    # reports at iterations 0 and 2 of each epoch; a window may span the epoch's end, as in the book
    windows = [losses[0:1], losses[1:3], losses[3:4], losses[4:6]]
    assert trainer.loss_list == pytest.approx([np.mean(w) for w in windows])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == '| epoch 1 | iter 1 / 3 | time 0[s] | loss %.2f' % losses[0]
    assert [line[:26] for line in lines] == ['| epoch 1 | iter 1 / 3 | t', '| epoch 1 | iter 3 / 3 | t',
                                             '| epoch 2 | iter 1 / 3 | t', '| epoch 2 | iter 3 / 3 | t']
    assert trainer.current_epoch == 2
    trainer.fit(t, t, max_epoch=1, batch_size=4, eval_interval=2)
    assert len(trainer.loss_list) == 6 and trainer.current_epoch == 3     # loss_list grows over fits


@pytest.mark.filterwarnings('ignore:invalid value:RuntimeWarning')
def test_trainer_updates_clips_and_stops_at_divergence(capsys):
    class Quadratic(Recorder):
        """loss = ½‖w‖² on every batch, gradient w."""

        def __init__(self, w):
            super().__init__(0.0)
            self.params, self.grads = [np.array(w, dtype=float)], [np.zeros(len(w))]

        def forward(self, xs, ts):
            return 0.5 * float(self.params[0] @ self.params[0])

        def backward(self, dout=1):
            self.grads[0][...] = self.params[0]

    model = Quadratic([3.0, 4.0])
    Trainer(model, SGD(1.0)).fit(np.zeros(4), np.zeros(4), max_epoch=1, batch_size=4, max_grad=1.0)
    np.testing.assert_allclose(model.params[0], [3.0 - 0.6, 4.0 - 0.8], rtol=1e-5)     # clipped to norm 1
    model = Quadratic([np.inf, 0.0])
    trainer = Trainer(model, SGD(1.0))
    trainer.fit(np.zeros(8), np.zeros(8), max_epoch=3, batch_size=2, eval_interval=1)
    assert trainer.stopped.reason == 'diverged' and trainer.stopped.at == 1
    assert 'non-finite loss' in capsys.readouterr().out


def test_trainer_needs_one_batch():
    with pytest.raises(DataError, match='fewer than one batch'):
        Trainer(Recorder(0.0), SGD(0.1)).fit(np.zeros(3), np.zeros(3), batch_size=4)


def test_trainer_plot_writes_a_png(tmp_path):
    np.random.seed(0)
    trainer = Trainer(Losses(), SGD(0.1))
    trainer.fit(np.arange(40.0), np.arange(40.0), max_epoch=1, batch_size=4, eval_interval=3)
    path = trainer.plot(ylim=(0, 40), path=str(tmp_path / 'loss.png'))
    assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


# -- remove_duplicate ----------------------------------------------------------------

def book_remove_duplicate(params, grads):
    """The book's scan: every pair, until no pair is shared (values compared for the transpose)."""
    params, grads = params[:], [g.copy() for g in grads]
    while True:
        for i in range(len(params) - 1):
            for j in range(i + 1, len(params)):
                if params[i] is params[j]:
                    grads[i] += grads[j]
                elif (params[i].ndim == 2 and params[j].ndim == 2 and params[i].T.shape == params[j].shape
                      and np.all(params[i].T == params[j])):
                    grads[i] += grads[j].T
                else:
                    continue
                params.pop(j)
                grads.pop(j)
                break
            else:
                continue
            break
        else:
            return params, grads


def tied_listing(rng):
    """The book's weight tying and sharing: W (3, 4) listed as W, W.T and W again; a bias; a shared
    1-D weight listed twice."""
    W, b, u = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal(5)
    params = [W, b, W.T, u, W, u]
    grads = [rng.standard_normal(p.shape) for p in params]
    return params, grads


def test_remove_duplicate_is_the_books(rng):
    params, grads = tied_listing(rng)
    book_params, book_grads = book_remove_duplicate(params, grads)
    kept, summed = remove_duplicate(params, grads)
    assert [id(p) for p in kept] == [id(p) for p in book_params] == [id(params[i]) for i in (0, 1, 3)]
    for g, h in zip(summed, book_grads):
        np.testing.assert_allclose(g, h)
    assert summed[0] is grads[0]                      # summed in place, as the book's


def test_remove_duplicate_leaves_a_single_listing_alone_and_never_adds_a_gradient_to_itself(rng):
    W = rng.standard_normal((3, 3))
    g = rng.standard_normal((3, 3))
    before = g.copy()
    kept, summed = remove_duplicate([W, W.T], [g, g.T])     # the framework's tying: one gradient, two views
    assert kept == [W] and summed == [g]
    np.testing.assert_array_equal(g, before)
    x, y = rng.standard_normal(2), rng.standard_normal((2, 2))
    kept, summed = remove_duplicate([x, y], [x * 0, y * 0])
    assert [id(p) for p in kept] == [id(x), id(y)] and len(summed) == 2


def test_remove_duplicate_finds_the_sharing_once_per_listing(rng, monkeypatch):
    import common.trainer as trainer_module
    calls = []
    real = trainer_module.find_shared
    monkeypatch.setattr(trainer_module, 'find_shared', lambda params: calls.append(1) or real(params))
    params, grads = tied_listing(rng)
    for _ in range(5):
        kept, summed = remove_duplicate(params, grads)
    assert len(calls) == 1 and len(kept) == 3
    remove_duplicate(params[:2], grads[:2])               # another listing: looked at afresh
    assert len(calls) == 2


def test_trainer_trains_a_book_tied_model_as_one_weight(rng):
    """A model listing W and W.T (the book's tying) moves the one weight by the summed gradient."""
    class Tied(Recorder):
        def __init__(self):
            super().__init__(0.0)
            W = np.ones((2, 3))
            self.params, self.grads = [W, W.T], [np.full((2, 3), 1.0), np.full((3, 2), 2.0)]

        def forward(self, xs, ts):
            return 0.0

    model = Tied()
    Trainer(model, SGD(0.1)).fit(np.zeros(2), np.zeros(2), max_epoch=1, batch_size=2)
    np.testing.assert_allclose(model.params[0], 1 - 0.1 * 3.0)
    assert len(model.params) == 2                         # the model's own listing is left as it was

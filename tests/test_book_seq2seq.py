"""The book's chapters 7 and 8 run unchanged on this framework: its imports, its flows
(ch07/show_addition_dataset.py, ch07/train_seq2seq.py with reversed input and the peeky decoder,
ch08/train.py with attention on the dates, generation, save and load), on NumPy and through the
stand-in CuPy; a short train_seq2seq run equals an independent step-by-step reference of the book's
math (per-step LSTM cells, np.add.at embeddings, the book's Adam and clipping) to float32 rounding;
the models' gradients equal finite differences in float64."""
import json
import os

import numpy as np
import pytest

from common.gradcheck import assert_close, check_layer, check_model, numerical_gradient
from helpers.book_seq2seq import (AttentionSeq2seq, AttentionWeight, PeekySeq2seq, Seq2seq, TimeAttention,
                                  WeightSum)
from helpers.processes import run_python

BOOK_IMPORTS = ('import numpy as np\n'
                'from dataset import sequence\n'
                'from common.optimizer import Adam\n'
                'from common.trainer import Trainer\n'
                'from common.util import eval_seq2seq\n'
                'from common.time_layers import *\n'
                'from common.base_model import BaseModel\n'
                'from common.np import *\n'
                'from common.layers import Softmax\n')


@pytest.fixture
def data(shared_data, monkeypatch):
    """The book's files from the shared data (DLFS_DATA_DIR), a fresh vocabulary."""
    from dataset import sequence
    folder = os.path.join(shared_data, 'sequence')
    if not os.path.isfile(os.path.join(folder, 'addition.txt')):
        pytest.skip(f'{folder} has no addition.txt')
    monkeypatch.setenv('DLFS_DATA_DIR', shared_data)
    monkeypatch.setattr(sequence, 'char_to_id', {})
    monkeypatch.setattr(sequence, 'id_to_char', {})
    return shared_data


def test_the_chapters_import_lines_work():
    namespace = {}
    exec(BOOK_IMPORTS, namespace)
    for name in ('TimeEmbedding', 'TimeLSTM', 'TimeAffine', 'TimeSoftmaxWithLoss', 'Trainer', 'eval_seq2seq',
                 'BaseModel', 'Softmax'):
        assert callable(namespace[name]), name
    assert callable(namespace['sequence'].load_data) and callable(namespace['sequence'].get_vocab)


def test_show_addition_dataset(data, capsys):
    from dataset import sequence
    (x_train, t_train), (x_test, t_test) = sequence.load_data("addition.txt", seed=1984)
    char_to_id, id_to_char = sequence.get_vocab()
    print(x_train.shape, t_train.shape)
    print(x_test.shape, t_test.shape)
    print(x_train[0])
    print(t_train[0])
    print("".join([id_to_char[c] for c in x_train[0]]))
    print("".join([id_to_char[c] for c in t_train[0]]))
    assert capsys.readouterr().out.splitlines() == [                   # the book's comments
        '(45000, 7) (45000, 5)', '(5000, 7) (5000, 5)', '[ 3  0  2  0  0 11  5]', '[ 6  0 11  7  5]',
        '71+118 ', '_189 ']


def train_seq2seq(model_class, file_name='addition.txt', is_reverse=False, rows=400, test_rows=20,
                  max_epoch=1, wordvec_size=16, hidden_size=32, batch_size=40, seed=1):
    """ch07/train_seq2seq.py (and ch08/train.py), shortened: the first ``rows`` training and
    ``test_rows`` test questions, a smaller model. Returns (model, trainer, acc_list)."""
    from dataset import sequence
    from common.optimizer import Adam
    from common.trainer import Trainer
    from common.util import eval_seq2seq

    (x_train, t_train), (x_test, t_test) = sequence.load_data(file_name)
    char_to_id, id_to_char = sequence.get_vocab()
    x_train, t_train, x_test, t_test = x_train[:rows], t_train[:rows], x_test[:test_rows], t_test[:test_rows]
    if is_reverse:
        x_train, x_test = x_train[:, ::-1], x_test[:, ::-1]

    np.random.seed(seed)
    model = model_class(len(char_to_id), wordvec_size, hidden_size)
    trainer = Trainer(model, Adam())
    acc_list = []
    for epoch in range(max_epoch):
        trainer.fit(x_train, t_train, max_epoch=1, batch_size=batch_size, max_grad=5.0)
        correct_num = 0
        for i in range(len(x_test)):
            question, correct = x_test[[i]], t_test[[i]]
            verbose = i < 10
            correct_num += eval_seq2seq(model, question, correct, id_to_char, verbose, is_reverse)
        acc_list.append(float(correct_num) / len(x_test))
    return model, trainer, acc_list


@pytest.mark.parametrize('model_class, is_reverse', [(Seq2seq, False), (Seq2seq, True), (PeekySeq2seq, True)])
def test_train_seq2seq(data, capsys, model_class, is_reverse):
    model, trainer, acc_list = train_seq2seq(model_class, is_reverse=is_reverse, max_epoch=2)
    assert len(trainer.loss_list) == 2 * 1 and trainer.current_epoch == 2        # 10 iterations an epoch
    assert trainer.loss_list[-1] < trainer.loss_list[0] < 2.7                     # from about ln 13
    assert all(0.0 <= acc <= 1.0 for acc in acc_list) and len(acc_list) == 2
    out = capsys.readouterr().out.splitlines()
    questions = [line for line in out if line.startswith('Q ')]
    assert len(questions) == 20 and all(len(q) == 2 + 7 for q in questions)
    assert all('+' in q for q in questions)                                      # read the right way round
    assert out.count('---') == 20
    guess = model.generate(np.array([[3, 0, 2, 0, 0, 11, 5]]), 6, 4)               # the generate path
    assert len(guess) == 4 and all(0 <= int(c) < 13 for c in guess)


def test_ch08_train_with_attention_on_dates(data, tmp_path, monkeypatch, capsys):
    from dataset import sequence
    monkeypatch.chdir(tmp_path)
    model, trainer, acc_list = train_seq2seq(AttentionSeq2seq, 'date.txt', is_reverse=True, rows=200,
                                             test_rows=12, wordvec_size=8, hidden_size=16)
    lines = capsys.readouterr().out.splitlines()
    (_, _), (x_test, t_test) = sequence.load_data('date.txt')
    id_to_char = sequence.get_vocab()[1]
    assert len(trainer.loss_list) == 1 and abs(trainer.loss_list[0] - np.log(len(id_to_char))) < 0.5
    first_q = [line for line in lines if line.startswith('Q ')][0]
    assert first_q == 'Q ' + ''.join(id_to_char[int(c)] for c in x_test[0])       # reversed back for printing
    model.forward(x_test[[0], ::-1], t_test[[0]])                                  # as ch08/visualize_attention.py
    weights = model.decoder.attention.attention_weights
    assert len(weights) == 10 and weights[0].shape == (1, 29)                      # one per answer character
    np.testing.assert_allclose([float(w.sum()) for w in weights], 1.0, rtol=1e-5)
    d = np.array(weights)
    assert d.reshape(d.shape[0], d.shape[2]).shape == (10, 29)                      # the attention map drawn

    model.save_params()                                                             # ch08/train.py's last step
    assert os.path.isfile('AttentionSeq2seq.pkl')
    again = AttentionSeq2seq(len(id_to_char), 8, 16)
    again.load_params()
    question = x_test[[3], ::-1]
    assert again.generate(question, int(t_test[3, 0]), 10) == model.generate(question, int(t_test[3, 0]), 10)


# -- the same run, step by step: the book's math written out ----------------------------

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_forward(xs, Wx, Wh, b, h):
    """The book's LSTM cell, one step at a time; returns hs and each step's cache."""
    N, T, _ = xs.shape
    H = Wh.shape[0]
    c = np.zeros((N, H), dtype='f')
    hs, caches = np.empty((N, T, H), dtype='f'), []
    for t in range(T):
        A = xs[:, t] @ Wx + h @ Wh + b
        f, g, i, o = sigmoid(A[:, :H]), np.tanh(A[:, H:2 * H]), sigmoid(A[:, 2 * H:3 * H]), sigmoid(A[:, 3 * H:])
        c_next = f * c + g * i
        h_next = o * np.tanh(c_next)
        caches.append((xs[:, t], h, c, f, g, i, o, c_next))
        h, c = h_next, c_next
        hs[:, t] = h
    return hs, caches


def lstm_backward(dhs, Wx, Wh, caches):
    """Back through the steps in reverse: dxs, the gradient of the first h, (dWx, dWh, db)."""
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wx.shape[1], dtype='f')
    dxs = np.empty(dhs.shape[:2] + (Wx.shape[0],), dtype='f')
    dh, dc = 0, 0
    for t in reversed(range(dhs.shape[1])):
        x, h_prev, c_prev, f, g, i, o, c_next = caches[t]
        dh = dhs[:, t] + dh
        tc = np.tanh(c_next)
        ds = dc + dh * o * (1 - tc ** 2)
        dA = np.hstack((ds * c_prev * f * (1 - f), ds * i * (1 - g ** 2), ds * g * i * (1 - i),
                        dh * tc * o * (1 - o)))
        dWx += x.T @ dA
        dWh += h_prev.T @ dA
        db += dA.sum(axis=0)
        dxs[:, t] = dA @ Wx.T
        dh, dc = dA @ Wh.T, ds * f
    return dxs, dh, (dWx, dWh, db)


def seq2seq_step(params, xs, ts):
    """Loss and gradients of the book's Seq2seq for one batch (params in its listing order)."""
    eW, eWx, eWh, eb, dW, dWx, dWh, db, aW, ab = params
    N, H = len(xs), eWh.shape[0]
    enc_hs, enc_cache = lstm_forward(eW[xs], eWx, eWh, eb, np.zeros((N, H), dtype='f'))
    dec_in, target = ts[:, :-1], ts[:, 1:]
    dec_hs, dec_cache = lstm_forward(dW[dec_in], dWx, dWh, db, enc_hs[:, -1])
    T, V = dec_in.shape[1], aW.shape[1]
    score = dec_hs.reshape(N * T, H) @ aW + ab
    p = np.exp(score - score.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows, labels = np.arange(N * T), target.reshape(N * T)
    loss = -np.log(p[rows, labels]).sum() / (N * T)

    dscore = p.copy()
    dscore[rows, labels] -= 1
    dscore /= N * T
    g_aW, g_ab = dec_hs.reshape(N * T, H).T @ dscore, dscore.sum(axis=0)
    ddec_x, dh0, g_dec = lstm_backward((dscore @ aW.T).reshape(N, T, H), dWx, dWh, dec_cache)
    g_dW = np.zeros_like(dW)
    np.add.at(g_dW, dec_in, ddec_x)
    denc = np.zeros_like(enc_hs)
    denc[:, -1] = dh0
    denc_x, _, g_enc = lstm_backward(denc, eWx, eWh, enc_cache)
    g_eW = np.zeros_like(eW)
    np.add.at(g_eW, xs, denc_x)
    return loss, [g_eW, *g_enc, g_dW, *g_dec, g_aW, g_ab]


def reference_training(params, adam, x, t, max_epoch, batch_size, max_grad, eval_interval=20):
    """The book's Trainer.fit with its clip_grads and Adam(lr=0.001), step by step; ``adam``: the
    optimizer's state (m, v, the step count), kept from one call to the next."""
    m = adam.setdefault('m', [np.zeros_like(p) for p in params])
    v = adam.setdefault('v', [np.zeros_like(p) for p in params])
    loss_list, total, count = [], 0.0, 0
    for _ in range(max_epoch):
        idx = np.random.permutation(np.arange(len(x)))
        x, t = x[idx], t[idx]
        for iters in range(len(x) // batch_size):
            loss, grads = seq2seq_step(params, x[iters * batch_size:(iters + 1) * batch_size],
                                       t[iters * batch_size:(iters + 1) * batch_size])
            norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
            if max_grad / (norm + 1e-6) < 1:
                grads = [g * (max_grad / (norm + 1e-6)) for g in grads]
            adam['iter'] = it = adam.get('iter', 0) + 1
            lr_t = 0.001 * np.sqrt(1.0 - 0.999 ** it) / (1.0 - 0.9 ** it)
            for p, g, mi, vi in zip(params, grads, m, v):
                mi += (1 - 0.9) * (g - mi)
                vi += (1 - 0.999) * (g ** 2 - vi)
                p -= lr_t * mi / (np.sqrt(vi) + 1e-7)
            total, count = total + loss, count + 1
            if iters % eval_interval == 0:
                loss_list.append(total / count)
                total, count = 0.0, 0
    return loss_list


def test_a_short_train_seq2seq_equals_the_step_by_step_reference(data, capsys):
    from dataset import sequence
    from common.optimizer import Adam
    from common.trainer import Trainer

    (x_train, t_train), _ = sequence.load_data('addition.txt')
    x, t = x_train[:600, ::-1], t_train[:600]
    np.random.seed(11)
    model = Seq2seq(len(sequence.get_vocab()[0]), 8, 16)
    start = [p.copy() for p in model.params]
    state = np.random.get_state()
    trainer = Trainer(model, Adam())
    for _ in range(2):
        trainer.fit(x, t, max_epoch=1, batch_size=30, max_grad=1.0, eval_interval=5)

    np.random.set_state(state)
    params = [p.copy() for p in start]
    adam = {}
    losses = reference_training(params, adam, x, t, 1, 30, 1.0, eval_interval=5)
    losses += reference_training(params, adam, x, t, 1, 30, 1.0, eval_interval=5)
    assert len(losses) == len(trainer.loss_list) == 8
    np.testing.assert_allclose(trainer.loss_list, losses, rtol=2e-5)
    for i, (ours, ref, before) in enumerate(zip(model.params, params, start)):
        moved = np.abs(ref - before).max()
        assert moved > 1e-4, i
        assert np.abs(ours - ref).max() <= 1e-3 * moved + 1e-6, i


# -- the GPU path -------------------------------------------------------------------------

GPU_FLOW = '''
import json, sys
from helpers.book_seq2seq import PeekySeq2seq, AttentionSeq2seq
from test_book_seq2seq import train_seq2seq
out = {}
for cls, name in ((PeekySeq2seq, 'addition.txt'), (AttentionSeq2seq, 'date.txt')):
    model, trainer, acc = train_seq2seq(cls, name, is_reverse=True, rows=200, test_rows=5, hidden_size=8,
                                        batch_size=20, wordvec_size=4)
    out[cls.__name__] = trainer.loss_list + acc
print(json.dumps(out))
'''


def test_the_flows_on_the_gpu_path_match_numpy(data):
    """Trainer, eval_seq2seq and the book's models through the stand-in CuPy (device arrays
    throughout, no host indices into them): the same losses as on NumPy."""
    env = {'DLFS_DATA_DIR': data}
    cpu = run_python(GPU_FLOW, env)
    gpu = run_python(GPU_FLOW, dict(env, DLFS_GPU='1'), fake_cupy=True)
    assert cpu.returncode == 0, cpu.stderr
    assert gpu.returncode == 0, gpu.stderr
    a, b = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (cpu, gpu))
    assert a.keys() == b.keys() == {'PeekySeq2seq', 'AttentionSeq2seq'}
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-5), key


# -- finite differences --------------------------------------------------------------------

@pytest.mark.parametrize('model_class', [Seq2seq, PeekySeq2seq, AttentionSeq2seq])
def test_model_gradients_equal_finite_differences(model_class):
    np.random.seed(4)
    model = model_class(6, 3, 4, dtype='d')
    rng = np.random.default_rng(4)
    xs, ts = rng.integers(0, 6, (2, 4)), rng.integers(0, 6, (2, 4))
    for p in model.params:                       # biases away from zero, so that their gradients show
        p += rng.standard_normal(p.shape) * 0.3
    check_model(model, lambda: model.forward(xs, ts), model_class.__name__)


def test_attention_layers_equal_finite_differences(rng):
    hs, h = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 3))
    a = rng.standard_normal((2, 5))
    check_layer(WeightSum(), (hs, a), rng, backward_returns_tuple=True)
    check_layer(AttentionWeight(), (hs, h), rng, backward_returns_tuple=True)
    check_layer(TimeAttention(), (hs, rng.standard_normal((2, 4, 3))), rng, backward_returns_tuple=True)
    # the second inputs: a (WeightSum), h (AttentionWeight), hs_dec (TimeAttention)
    for layer, inputs in ((WeightSum(), (hs, a)), (AttentionWeight(), (hs, h)),
                          (TimeAttention(), (hs, rng.standard_normal((2, 4, 3))))):
        R = rng.standard_normal(layer.forward(*inputs).shape)
        layer.forward(*inputs)
        second = layer.backward(R)[1]
        assert_close(second, numerical_gradient(lambda: (layer.forward(*inputs) * R).sum(), inputs[1]),
                     type(layer).__name__)

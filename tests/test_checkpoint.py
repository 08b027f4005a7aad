"""Checkpoints: what they hold, that they restore exactly, and that a damaged
or foreign file is refused with one line."""
import os
import pickle
import random

import numpy as np
import pytest

from common import backend
from common.run import fileio
from common.run.checkpoint import (Checkpoint, TrainingState, load_checkpoint, optimizer_state, restore_snapshot,
                               save_checkpoint, set_optimizer_state, snapshot)
from common.errors import CheckpointError
from common.optimizer import SGD, AdaGrad, Adam, Momentum
from common.trainer import RnnlmTrainer
from ch_gru.rnnlm import Rnnlm

VOCAB = [f'w{i}' for i in range(11)]
DATA = {'train_tokens': 201, 'train_crc32': 1, 'batch_size': 2, 'time_size': 5}


def trained(cell='gru', optimizer=None, hidden=6):
    """A small model after a few updates, stopped inside an epoch so that
    the optimizer has slots and the layers carry hidden states."""
    np.random.seed(0)
    backend.seed(0)
    model = Rnnlm(11, hidden, hidden, num_layers=2, dropout_ratio=0.2, cell=cell)
    optimizer = optimizer or Adam(0.01)
    corpus = np.random.default_rng(0).integers(0, 11, 201)
    trainer = RnnlmTrainer(model, optimizer)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=2, time_size=5, max_grad=1.0, eval_interval=0)
    return model, optimizer


def state():
    st = TrainingState(epoch=2, iteration=3, epoch_loss=7.25, best_valid_ppl=12.5, divergences=1, elapsed_s=9.0)
    st.history = {'epoch': [1, 2], 'train': [20.0, 15.0], 'valid': [14.0, 12.5], 'lr': [1.0, 1.0]}
    return st


def write(path, model, optimizer, best=True, options=None):
    best_params = [p * 2 for p in model.params] if best else None
    return save_checkpoint(str(path), model, optimizer, state(), best_params, VOCAB, options or {'lr': 1.0}, DATA)


@pytest.mark.parametrize('make_optimizer', [lambda: SGD(0.5), lambda: Momentum(0.1, 0.8), lambda: AdaGrad(0.1),
                                            lambda: Adam(0.01, beta1=0.8)])
def test_round_trip_restores_everything(tmp_path, make_optimizer):
    model, optimizer = trained('lstm', make_optimizer())
    assert model.rnn_layers[0].c is not None
    path = write(tmp_path / 'c.npz', model, optimizer, options={'lr': 0.5, 'cell': 'lstm'})
    expected_rng = backend.get_rng_state()
    drawn = backend.uniform((5,), 'float32')

    fresh_model = Rnnlm(11, 6, 6, num_layers=2, dropout_ratio=0.2, cell='lstm')
    fresh_opt = make_optimizer()
    backend.seed(99)
    ck = load_checkpoint(path)
    ck.check(fresh_model, fresh_opt, VOCAB, DATA)
    st, best = ck.restore(fresh_model, fresh_opt)

    for p, q, b in zip(model.params, fresh_model.params, best):
        np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(b, p * 2)
    for a, b in zip(model.rnn_layers, fresh_model.rnn_layers):
        np.testing.assert_array_equal(a.h, b.h)
        np.testing.assert_array_equal(a.c, b.c)
    assert np.shares_memory(fresh_model.affine.params[0], fresh_model.embed.params[0])   # still tied
    mine, theirs = optimizer_state(optimizer, np.copy), optimizer_state(fresh_opt, np.copy)
    assert mine['values'] == theirs['values'] and mine['values']['lr'] == optimizer.lr
    assert set(mine['slots']) == set(theirs['slots'])
    for name in mine['slots']:
        for a, b in zip(mine['slots'][name], theirs['slots'][name]):
            np.testing.assert_array_equal(a, b)
    assert st == state() and ck.options == {'lr': 0.5, 'cell': 'lstm'} and ck.vocab == VOCAB
    assert backend.get_rng_state() == expected_rng
    np.testing.assert_array_equal(backend.uniform((5,), 'float32'), drawn)     # dropout masks go on alike


def test_adam_step_count_and_slots_make_the_next_update_identical(tmp_path):
    model, opt = trained(optimizer=Adam(0.01))
    assert opt.iter == 20
    path = write(tmp_path / 'c.npz', model, opt)
    other, other_opt = Rnnlm(11, 6, 6, num_layers=2, dropout_ratio=0.2), Adam(0.01)
    load_checkpoint(path).restore(other, other_opt)
    assert other_opt.iter == 20
    grads = [np.full_like(p, 0.1) for p in model.params]
    opt.update(model.params, grads)
    other_opt.update(other.params, grads)
    for p, q in zip(model.params, other.params):
        np.testing.assert_array_equal(p, q)


def test_snapshot_restores_parameters_optimizer_and_hidden_state():
    model, opt = trained(optimizer=Momentum(0.1))
    snap = snapshot(model, opt)
    before = [p.copy() for p in model.params]
    v_before = [v.copy() for v in opt.v]
    h_before = model.rnn_layers[1].h.copy()
    lr = opt.lr
    for p in model.params:
        p[...] = np.nan
    for v in opt.v:
        v[...] = np.nan
    opt.lr = 123.0
    model.reset_state()
    restore_snapshot(model, opt, snap)
    for p, b in zip(model.params, before):
        np.testing.assert_array_equal(p, b)
    for v, b in zip(opt.v, v_before):
        np.testing.assert_array_equal(v, b)
    np.testing.assert_array_equal(model.rnn_layers[1].h, h_before)
    assert opt.lr == lr


def test_optimizer_state_is_generic():
    class Custom:
        def __init__(self):
            self.lr, self.decay, self.name, self.steps = 0.1, np.float32(0.5), 'x', 3
            self.acc = [np.ones(2), np.zeros(3)]
            self.scale = np.full(4, 2.0)
            self._cache = object()        # private: a cache, not state

    st = optimizer_state(Custom(), np.copy)
    assert st['values'] == {'lr': 0.1, 'decay': 0.5, 'name': 'x', 'steps': 3}
    assert set(st['slots']) == {'acc', 'scale'}
    target = Custom()
    target.acc[0][...] = 7
    keep = target.acc[0]
    target.scale = None
    set_optimizer_state(target, st)
    assert target.acc[0] is keep and (keep == 1).all()          # copied in place: aliases stay valid
    np.testing.assert_array_equal(target.scale, np.full(4, 2.0))

    odd = Custom()
    odd.schedule = {'a': 1}
    with pytest.raises(TypeError, match='Custom.schedule'):
        optimizer_state(odd, np.copy)


@pytest.mark.parametrize('change,match', [
    (dict(hidden=8), r"another model \(wordvec_size 6 vs 8; hidden_size 6 vs 8; checkpoint vs this run\): "
                     r"resume with the options it was saved with"),
    (dict(cell='lstm'), r"another model \(cell 'gru' vs 'lstm'"),
    (dict(vocab=VOCAB[:-1] + ['zz']), r"another vocabulary \(id 10 is 'w10' in the checkpoint, 'zz' in this run\)"),
    (dict(vocab=VOCAB + ['w11']), r"another vocabulary \(11 words in the checkpoint, 12 in this run\)"),
    (dict(data=dict(DATA, train_crc32=2)), r"other data or batches \(train_crc32 1 vs 2"),
    (dict(data=dict(DATA, batch_size=3)), r"other data or batches \(batch_size 2 vs 3"),   # mid-epoch
    (dict(optimizer=SGD(1.0)), r"written with the Adam optimizer but this run uses SGD"),
])
def test_a_checkpoint_of_another_run_is_refused(tmp_path, change, match):
    model, opt = trained()
    path = write(tmp_path / 'c.npz', model, opt)
    hidden = change.get('hidden', 6)
    other = Rnnlm(11, hidden, hidden, num_layers=2, dropout_ratio=0.2, cell=change.get('cell', 'gru'))
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path).check(other, change.get('optimizer', Adam(0.01)), change.get('vocab', VOCAB),
                                    change.get('data', DATA))
    assert '\n' not in str(err.value) and str(path) in str(err.value)


def test_another_model_class_is_refused(tmp_path):
    from ch_gru.better_rnnlm import BetterRnnlm
    model, opt = trained()
    path = write(tmp_path / 'c.npz', model, opt)
    with pytest.raises(CheckpointError, match='holds a Rnnlm but this run trains a BetterRnnlm'):
        load_checkpoint(path).check(BetterRnnlm(11, 6, 6, 0.2), opt, VOCAB, DATA)


def test_truncated_checkpoints_are_refused(tmp_path):
    model, opt = trained()
    path = write(tmp_path / 'c.npz', model, opt)
    whole = open(path, 'rb').read()
    for size in (0, 1, 10, 100, len(whole) // 2, len(whole) - 100, len(whole) - 1):
        cut = tmp_path / f'cut{size}.npz'
        cut.write_bytes(whole[:size])
        with pytest.raises(CheckpointError, match='truncated or corrupted') as err:
            load_checkpoint(str(cut))
        assert '\n' not in str(err.value)


def test_flipped_bytes_never_load_as_different_data(tmp_path):
    """Flip one byte anywhere: the load fails with CheckpointError, or (for
    bytes that carry no data, e.g. a timestamp in a zip header) gives back
    exactly the arrays and metadata that were saved."""
    model, opt = trained()
    path = write(tmp_path / 'c.npz', model, opt)
    whole = bytearray(open(path, 'rb').read())
    arrays, meta = fileio.load_npz(path)
    rng = random.Random(5)
    refused = 0
    positions = rng.sample(range(len(whole)), 150) + [len(whole) // 2, 40, len(whole) - 30]
    for pos in positions:
        bad = bytearray(whole)
        bad[pos] ^= 1 << rng.randrange(8)
        damaged = tmp_path / 'flip.npz'
        damaged.write_bytes(bytes(bad))
        try:
            ck = load_checkpoint(str(damaged))
        except CheckpointError as exc:
            assert '\n' not in str(exc)
            refused += 1
            continue
        assert ck.meta == meta
        assert set(ck.arrays) == set(arrays)
        for k in arrays:
            np.testing.assert_array_equal(ck.arrays[k], arrays[k])
    assert refused > len(positions) * 0.9


def test_files_that_are_not_checkpoints(tmp_path):
    model, opt = trained()
    text = tmp_path / 'notes.npz'
    text.write_text('hello\n')
    evil = tmp_path / 'evil.npz'
    evil.write_bytes(pickle.dumps({'a': 1}))
    for path in (text, evil):
        with pytest.raises(CheckpointError, match=r'is not a checkpoint written by this framework \(not an .npz '
                                                  r'archive, or its first bytes are damaged\): check the path'):
            load_checkpoint(str(path))
    empty = tmp_path / 'empty.npz'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointError, match='truncated or corrupted'):
        load_checkpoint(str(empty))
    params = model.save_params(str(tmp_path / 'Rnnlm.npz'), vocab=VOCAB)
    with pytest.raises(CheckpointError, match='holds model parameters only, not a training checkpoint'):
        load_checkpoint(params)
    plain = tmp_path / 'plain.npz'
    np.savez(plain, a=np.ones(3))
    with pytest.raises(CheckpointError, match='not a checkpoint written by this framework'):
        load_checkpoint(str(plain))
    other = tmp_path / 'other.npz'
    fileio.save_npz(str(other), {'a': np.ones(3)}, {'format': 'something-else'})
    with pytest.raises(CheckpointError, match='not a training checkpoint of this framework'):
        load_checkpoint(str(other))
    with pytest.raises(CheckpointError, match='no such checkpoint'):
        load_checkpoint(str(tmp_path / 'missing.npz'))


def test_checkpoint_missing_an_array_is_refused(tmp_path):
    model, opt = trained()
    path = write(tmp_path / 'c.npz', model, opt)
    arrays, meta = fileio.load_npz(path)
    del arrays['optim_m_003']
    fileio.save_npz(path, arrays, meta)
    with pytest.raises(CheckpointError, match="incomplete checkpoint \\(no 'optim_m_003' in it\\)"):
        load_checkpoint(path).restore(Rnnlm(11, 6, 6, num_layers=2, dropout_ratio=0.2), Adam(0.01))


def test_a_crash_while_writing_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    model, opt = trained()
    path = write(tmp_path / 'c.npz', model, opt)
    before = open(path, 'rb').read()

    def crash(f, **arrays):
        f.write(b'PK\x03\x04 half an archive')
        raise OSError('No space left on device')

    monkeypatch.setattr(fileio.numpy, 'savez', crash)
    with pytest.raises(OSError):
        write(path, model, opt)
    assert open(path, 'rb').read() == before
    assert os.listdir(tmp_path) == ['c.npz']                    # no temporary file left behind
    monkeypatch.undo()
    assert isinstance(load_checkpoint(path), Checkpoint)


@pytest.fixture
def umask():
    """Set the process umask for one test."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize('mask', [0o022, 0o002, 0o077], ids=lambda m: f'umask{m:03o}')
def test_files_get_the_permissions_of_a_plain_write(tmp_path, umask, mask):
    umask(mask)
    model, optimizer = trained()
    written = [model.save_params(str(tmp_path / 'model.npz')), write(tmp_path / 'run' / 'checkpoint.npz', model,
                                                                     optimizer)]
    with fileio.atomic_file(tmp_path / 'cache' / 'vocab.txt', 'w') as f:
        f.write('a\n')
    written.append(tmp_path / 'cache' / 'vocab.txt')
    with open(tmp_path / 'plain', 'w') as f:
        f.write('a\n')
    expected = 0o666 & ~mask
    assert os.stat(tmp_path / 'plain').st_mode & 0o777 == expected
    for path in written:
        assert os.stat(path).st_mode & 0o777 == expected, path


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    model, _ = trained()
    path = model.save_params(str(tmp_path / 'model.npz'))
    os.chmod(path, 0o660)
    model.save_params(path)
    assert os.stat(path).st_mode & 0o777 == 0o660

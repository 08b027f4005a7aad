"""The shared epoch loop: checkpoints, resume, Ctrl-C and divergence, in process."""
import json
import os
import signal

import numpy as np
import pytest

from common import backend
from common.run.checkpoint import load_checkpoint
from common.errors import TrainingError
from common.optimizer import SGD, Momentum
from common.run.settings import TrainSettings
from common.run.loop import train_with_validation
from ch_gru.rnnlm import Rnnlm

V = 12
VOCAB = [f'w{i}' for i in range(V)]
CORPUS = np.random.default_rng(7).integers(0, V, 1201).astype(np.int32)
HUGE = 2.0 ** 126          # clipped steps of this size overflow float32: the loss becomes NaN


def model(dropout=0.0):
    np.random.seed(1)
    backend.seed(1)
    return Rnnlm(V, 8, 8, num_layers=2, dropout_ratio=dropout)


def train(tmp_path, m, opt, max_epoch, resume=None, **kw):
    kw.setdefault('checkpoint_path', str(tmp_path / 'checkpoint.npz'))
    kw.setdefault('max_grad', 1.0)
    settings = TrainSettings(max_epoch=max_epoch, batch_size=4, time_size=10, eval_interval=0, out_dir=str(tmp_path),
                             eval_batch_size=3, save_path=str(tmp_path / 'best.npz'), **kw)
    return train_with_validation(m, opt, (CORPUS, CORPUS[:301], CORPUS[:301]), settings, resume=resume, vocab=VOCAB)


def events(tmp_path, kind):
    return [r for r in map(json.loads, open(tmp_path / 'log.jsonl')) if r['event'] == kind]


def test_divergence_goes_back_to_the_last_good_state_and_lowers_the_learning_rate(tmp_path, capsys):
    """Epoch 1 trains well; epoch 2 at a huge learning rate diverges, goes
    back to the end of epoch 1 (parameters and Momentum's velocities) and
    runs again at HUGE / factor = 0.5. Without dropout that must give exactly
    the parameters of a run that took epoch 2 at 0.5 from the start."""
    train(tmp_path, model(), Momentum(0.5, 0.5), 1)
    ck = str(tmp_path / 'checkpoint.npz')
    capsys.readouterr()

    exploded = model()
    result = train(tmp_path, exploded, Momentum(0.5, 0.5), 2, resume=load_checkpoint(ck), resume_lr=HUGE,
                   divergence_factor=2.0 ** 127, checkpoint_path=str(tmp_path / 'c2.npz'))
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith('-- warning')]
    assert len(warnings) == 1, out
    assert warnings[0].startswith('-- warning: non-finite loss or gradient norm at iteration 30 of epoch 2: ')
    assert 'back to the start of epoch 2 with learning rate' in warnings[0] and '= 0.5 (1 in a row' in warnings[0]
    assert result['history']['lr'] == [0.5, 0.5] and np.isfinite(result['test_ppl'])
    assert events(tmp_path, 'divergence')[0]['lr'] == HUGE

    straight = model()
    train(tmp_path, straight, Momentum(0.5, 0.5), 2, resume=load_checkpoint(ck), resume_lr=0.5,
          checkpoint_path=str(tmp_path / 'c3.npz'))
    a, b = load_checkpoint(str(tmp_path / 'c2.npz')), load_checkpoint(str(tmp_path / 'c3.npz'))
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])       # parameters, best, velocities
    assert a.state.divergences == 0 and a.meta['optimizer']['values']['lr'] == 0.5


def test_repeated_divergence_stops_and_keeps_the_best_parameters(tmp_path, capsys):
    train(tmp_path, model(), SGD(0.5), 1)
    ck, best = tmp_path / 'checkpoint.npz', tmp_path / 'best.npz'
    saved_ck, saved_best = ck.read_bytes(), best.read_bytes()
    m = model()
    with pytest.raises(TrainingError) as err:
        train(tmp_path, m, SGD(0.5), 4, resume=load_checkpoint(str(ck)), resume_lr=HUGE, max_divergences=3)
    msg = str(err.value)
    assert msg.startswith('training diverged 3 times in a row (last: ')
    assert 'the best parameters (valid ppl ' in msg and f'are in {best}' in msg
    assert f'the last good state is in {ck}' in msg and msg.endswith('start again with a smaller --lr or --max-grad')
    assert '\n' not in msg
    assert len([line for line in capsys.readouterr().out.splitlines() if line.startswith('-- warning')]) == 2
    assert [e['lr'] for e in events(tmp_path, 'divergence')] == [HUGE, HUGE / 4, HUGE / 16]
    assert ck.read_bytes() == saved_ck and best.read_bytes() == saved_best          # nothing good overwritten
    kept = load_checkpoint(str(ck))
    for p, i in zip(m.params, range(len(m.params))):
        np.testing.assert_array_equal(p, kept.arrays[f'best_{i:03d}'])             # the model holds the best


class SignalAt(SGD):
    """SGD that sends this process SIGINT at update ``n`` (a user's Ctrl-C);
    the counter is private, so checkpoints leave it alone."""

    def __init__(self, lr, n):
        super().__init__(lr)
        self._n = n

    def update(self, params, grads):
        super().update(params, grads)
        self._n -= 1
        if self._n == 0:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_mid_epoch_evaluates_and_resumes_exactly(tmp_path, capsys):
    train(tmp_path / 'a', model(dropout=0.3), SGD(0.5), 3)

    stopped = model(dropout=0.3)
    result = train(tmp_path / 'b', stopped, SignalAt(0.5, 30 + 7), 3)      # 30 iterations per epoch
    out = capsys.readouterr().out
    ck = str(tmp_path / 'b' / 'checkpoint.npz')
    assert result['interrupted'] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert f'-- stopped by Ctrl-C after iteration 7 of epoch 2: checkpoint in {ck}, continue with --resume' in out
    assert np.isfinite(result['test_ppl']) and '| end | best valid' in out           # still evaluated on test
    assert events(tmp_path / 'b', 'end')[0]['interrupted'] is True
    saved = load_checkpoint(ck)
    assert (saved.state.epoch, saved.state.iteration) == (1, 7)
    assert saved.meta['hidden'] == [['h'], ['h']]                                    # carried states saved

    train(tmp_path / 'b', model(dropout=0.3), SignalAt(0.5, 0), 3, resume=load_checkpoint(ck))
    assert 'resumed from' in capsys.readouterr().out
    a, b = load_checkpoint(str(tmp_path / 'a' / 'checkpoint.npz')), load_checkpoint(ck)
    assert sorted(a.arrays) == sorted(b.arrays) and b.state.epoch == 3
    for key in a.arrays:                     # final and best parameters, bit for bit
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    assert a.state.history == b.state.history


def test_resuming_a_finished_run_only_evaluates(tmp_path, capsys):
    train(tmp_path, model(), SGD(0.5), 2)
    before = load_checkpoint(str(tmp_path / 'checkpoint.npz'))
    capsys.readouterr()
    m = model()
    result = train(tmp_path, m, SGD(0.5), 2, resume=before)
    out = capsys.readouterr().out
    assert 'nothing to train: 2 of --max-epoch 2 epochs are done; give a larger --max-epoch to go on' in out
    assert '| epoch' not in out and np.isfinite(result['test_ppl'])
    assert result['best_valid_ppl'] == before.state.best_valid_ppl


def test_a_failed_checkpoint_write_warns_and_training_goes_on(tmp_path, capsys, monkeypatch):
    import common.run.checkpoint
    train(tmp_path, model(), SGD(0.5), 1)
    before = (tmp_path / 'checkpoint.npz').read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(common.run.checkpoint, 'save_checkpoint', disk_full)
    result = train(tmp_path, model(), SGD(0.5), 2, resume=load_checkpoint(str(tmp_path / 'checkpoint.npz')))
    out = capsys.readouterr().out
    assert (f'-- warning: could not write the checkpoint {tmp_path / "checkpoint.npz"} ([Errno 28] No space left '
            f'on device); the previous one is intact and training goes on') in out
    assert result['history']['epoch'] == [1, 2] and np.isfinite(result['test_ppl'])
    assert (tmp_path / 'checkpoint.npz').read_bytes() == before


class SignalTwiceAt(SignalAt):
    def update(self, params, grads):
        if self._n == 1:
            os.kill(os.getpid(), signal.SIGINT)        # the first asks to stop after this iteration,
        super().update(params, grads)                  # the second stops at once


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, model(), SignalTwiceAt(0.5, 30 + 7), 3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler       # handler put back
    saved = load_checkpoint(str(tmp_path / 'checkpoint.npz'))
    assert (saved.state.epoch, saved.state.iteration) == (1, 0)                # the end of epoch 1, whole
    assert 'stopped by Ctrl-C' not in capsys.readouterr().out


def test_cli_run_turns_keyboard_interrupt_into_status_130(capsys):
    from common.run.cli import run

    def main(argv):
        raise KeyboardInterrupt

    assert run(main, []) == 130
    assert capsys.readouterr().err == 'interrupted\n'


class PoisonAt(SignalAt):
    """SignalAt whose signalling update also overflows one weight to inf:
    the loss of that iteration was still finite."""

    def update(self, params, grads):
        if self._n == 1:
            params[0][0, 0] = np.inf
        super().update(params, grads)


class PoisonBefore(SignalAt):
    """SignalAt that overflows the output bias one update before signalling:
    the loss of the signalled iteration is already non-finite."""

    def update(self, params, grads):
        if self._n == 2:
            params[-1][0] = np.inf
        super().update(params, grads)


@pytest.mark.parametrize('kind,lr,at', [(PoisonBefore, 0.5, 3), (PoisonAt, 0.5, 1)],
                         ids=['loss already non-finite', 'only a parameter non-finite'])
def test_ctrl_c_in_a_diverged_state_saves_the_last_good_one(tmp_path, capsys, kind, lr, at):
    """Ctrl-C arriving after the run diverged but before a report saw it
    must not checkpoint the diverged state: back to the last good one."""
    train(tmp_path, model(), kind(0.5, 0), 1)
    capsys.readouterr()
    result = train(tmp_path, model(), kind(lr, at), 3, resume=load_checkpoint(str(tmp_path / 'checkpoint.npz')),
                   resume_lr=lr)
    out = capsys.readouterr().out
    assert result['interrupted']
    assert f'-- warning: non-finite loss or gradient norm at iteration {at} of epoch 2: back to the start of' in out
    saved = load_checkpoint(str(tmp_path / 'checkpoint.npz'))
    assert (saved.state.epoch, saved.state.iteration, saved.state.divergences) == (1, 0, 1)
    assert saved.meta['optimizer']['values']['lr'] == lr / 4
    assert all(np.isfinite(a).all() for a in saved.arrays.values())
    assert '-- stopped by Ctrl-C after epoch 1: checkpoint in' in out

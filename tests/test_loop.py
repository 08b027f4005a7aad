"""The epoch loop (common.run.loop): checkpoints, resume, Ctrl-C and divergence, validation inside
an epoch, the time budget and the lr schedule, in process."""
import json
import os
import signal

import numpy as np
import pytest

import common.trainer as trainer_module
from ch_gru.rnnlm import Rnnlm
from common import backend
from common.errors import TrainingError
from common.optimizer import SGD, Adam, Momentum
from common.run.checkpoint import load_checkpoint
from common.run.loop import train_with_validation
from common.run.settings import TrainSettings


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


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(trainer_module.time, 'perf_counter', c)
    return c


def small_run(tmp_path, name, lr_decay=4.0, **kwargs):
    rng = np.random.RandomState(0)
    corpus = rng.randint(0, 12, 3000).astype(np.int32)
    np.random.seed(5)
    model = Rnnlm(12, 8, 8, num_layers=2, dropout_ratio=0.0, tie_weights=False)
    out = tmp_path / name
    out.mkdir()
    settings = TrainSettings(max_epoch=2, batch_size=4, time_size=10, max_grad=1.0, eval_interval=0,
                             out_dir=str(out), eval_batch_size=4, unit='char', lr_decay=lr_decay, **kwargs)
    result = train_with_validation(model, Adam(0.01), (corpus[:2401], corpus[2401:], None), settings)
    return model, result, [json.loads(line) for line in open(out / 'log.jsonl')]


def test_validation_inside_an_epoch_does_not_disturb_training(tmp_path):
    """With the same seed, a run that evaluates every 7 iterations ends with
    exactly the parameters of a run that does not: the recurrent state is put
    aside and restored around each evaluation (eval batch = train batch, so a
    leaked state would be carried into training)."""
    plain, plain_result, _ = small_run(tmp_path, 'plain')
    tracked, result, log = small_run(tmp_path, 'tracked', valid_interval=7)
    for a, b in zip(plain.params, tracked.params):
        np.testing.assert_array_equal(a, b)
    evals = [r for r in log if r['event'] == 'eval']
    assert [r['iter'] for r in evals] == [7, 14, 21, 28, 35, 42, 49, 56, 60, 63, 70, 77, 84, 91, 98, 105, 112,
                                          119, 120]
    epochs = [r for r in log if r['event'] == 'epoch']
    assert [e['valid_ppl'] for e in epochs] == plain_result['history']['valid']
    assert epochs[0]['valid_ppl'] == next(r['valid_ppl'] for r in evals if r['iter'] == 60)
    assert (tmp_path / 'tracked' / 'curve.png').read_bytes()[:4] == b'\x89PNG'
    assert not (tmp_path / 'plain' / 'curve.png').exists()


def test_time_budget_ends_training_inside_an_epoch(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(trainer_module.time, 'perf_counter', clock)
    original = Rnnlm.forward

    def slow_forward(self, xs, ts, train_flg=True):
        if train_flg:
            clock.now += 1.0
        return original(self, xs, ts, train_flg)
    monkeypatch.setattr(Rnnlm, 'forward', slow_forward)
    _, result, log = small_run(tmp_path, 'budget', max_seconds=75.0, valid_interval=30)
    epochs = [r for r in log if r['event'] == 'epoch']
    assert [(e['iters'], e['partial']) for e in epochs] == [(60, False), (15, True)]
    assert log[-1]['event'] == 'end' and log[-1]['train_seconds'] == pytest.approx(75.0)
    assert log[-1]['iters'] == 75 and result['train_seconds'] == pytest.approx(75.0)
    assert [r['iter'] for r in log if r['event'] == 'eval'] == [30, 60, 75]


def test_learning_rate_factor_after_every_epoch(tmp_path):
    _, result, log = small_run(tmp_path, 'factor', lr_epoch_factor=0.5, lr_decay=3.0)
    e1, e2 = (r for r in log if r['event'] == 'epoch')
    assert e1['lr'] == 0.01 and e2['valid_ppl'] < e1['valid_ppl']      # improved: only the factor applies
    assert e2['lr'] == pytest.approx(0.01 * 0.5)


def asgd_run(tmp_path, max_epoch, resume=None, lr=3.0, data=None, **options):
    from common.run.settings import TrainSettings
    from common.run.loop import make_sgd, train_with_validation
    rng = np.random.default_rng(7)
    train, valid = data or (rng.integers(0, 12, 1201).astype(np.int32), rng.integers(0, 12, 301).astype(np.int32))
    np.random.seed(1)
    model = Rnnlm(12, 8, 8, num_layers=1, cell='lstm', locked_dropout=True, dropout_ratio=0.1, weight_drop=0.3,
                  embed_dropout=0.1, ar_alpha=1.0, tar_beta=1.0)
    s = TrainSettings(**{**dict(batch_size=4, time_size=10, eval_interval=0, eval_batch_size=3, max_grad=1.0,
                                lr_decay=1.0, max_epoch=max_epoch, asgd_nonmono=1, variable_bptt=True, seed=4,
                                out_dir=str(tmp_path), checkpoint_path=str(tmp_path / 'c.npz'),
                                save_path=str(tmp_path / 'm.npz')), **options})
    opt = make_sgd(lr, s)
    result = train_with_validation(model, opt, (train, valid, valid), s, resume=resume)
    return model, opt, result


def test_asgd_average_is_what_a_run_validates_saves_and_resumes_bit_identical(tmp_path):
    """Random ids: nothing to learn, so valid gets worse and averaging starts; a run stopped after two
    epochs and resumed ends exactly where the uninterrupted one does, average included."""
    from common.run.checkpoint import load_checkpoint
    from common.run.fileio import load_npz
    model, opt, result = asgd_run(tmp_path / 'a', 6)
    log = [__import__('json').loads(line) for line in open(tmp_path / 'a' / 'log.jsonl')]
    assert opt.averaging and opt.avg_count > 0 and any(r['event'] == 'asgd_start' for r in log)
    saved, _ = load_npz(str(tmp_path / 'a' / 'm.npz'))
    best_epoch = int(np.argmin(result['history']['valid']))
    start = next(r['epoch'] for r in log if r['event'] == 'asgd_start')
    assert best_epoch + 1 > start       # the best epoch came after the trigger: the file holds an average
    ck = load_checkpoint(str(tmp_path / 'a' / 'c.npz'))
    assert not np.array_equal(saved['param_001'], ck.arrays['param_001'])
    # the model ends with the best (averaged) weights; test perplexity is theirs
    for p, s in zip(model.params, saved.values()):
        np.testing.assert_array_equal(p, s)

    asgd_run(tmp_path / 'b', 2)
    ck = load_checkpoint(str(tmp_path / 'b' / 'c.npz'))
    resumed, opt2, result2 = asgd_run(tmp_path / 'b', 6, resume=ck)
    for p, q in zip(model.params, resumed.params):
        np.testing.assert_array_equal(p, q)
    for a, b in zip(opt.avg, opt2.avg):
        np.testing.assert_array_equal(a, b)
    assert (opt.checks, opt.avg_count) == (opt2.checks, opt2.avg_count)
    assert result2['test_ppl'] == result['test_ppl']


def test_asgd_restart_and_weight_decay_in_a_run_resume_bit_identical(tmp_path):
    """The fine-tuning restart happens in a run (logged, the weights set to the average) and a run
    stopped after it and resumed ends where the uninterrupted one does; weight decay is in the update.
    Train on x → x+1, validate on x → x+5: the better the model learns, the worse valid gets, so
    averaging starts and the average stalls."""
    import json
    ids = np.arange(1201, dtype=np.int32)
    options = dict(asgd_restarts=2, weight_decay=1e-3, data=(ids % 12, (ids[:301] * 5) % 12))
    model, opt, result = asgd_run(tmp_path / 'a', 9, lr=1.0, **options)
    log = [json.loads(line) for line in open(tmp_path / 'a' / 'log.jsonl')]
    events = [(r['event'], r['epoch']) for r in log if r['event'].startswith('asgd_')]
    assert events[0][0] == 'asgd_start' and 'asgd_restart' in {e for e, _ in events}, events
    assert opt.restarted >= 1 and opt.weight_decay == 1e-3
    restart_epoch = next(e for name, e in events if name == 'asgd_restart')
    asgd_run(tmp_path / 'b', restart_epoch + 1, lr=1.0, **options)
    from common.run.checkpoint import load_checkpoint
    resumed, opt2, result2 = asgd_run(tmp_path / 'b', 9, resume=load_checkpoint(str(tmp_path / 'b' / 'c.npz')),
                                      lr=1.0, **options)
    for p, q in zip(model.params, resumed.params):
        np.testing.assert_array_equal(p, q)
    assert (opt.checks, opt.avg_count, opt.restarted, opt.phase_start) == \
        (opt2.checks, opt2.avg_count, opt2.restarted, opt2.phase_start)
    assert result2['test_ppl'] == result['test_ppl']
    # without weight decay the same run ends elsewhere: the option reaches the optimizer
    plain, _, _ = asgd_run(tmp_path / 'c', 3, lr=1.0, asgd_restarts=2)
    decayed, _, _ = asgd_run(tmp_path / 'd', 3, lr=1.0, **options)
    assert not np.array_equal(plain.params[1], decayed.params[1])


def test_asgd_starts_at_the_latest_when_the_budget_is_half_spent(tmp_path, capsys):
    """A rule that would not fire in time (nonmono 50): with asgd_latest=0.5 of 4 epochs averaging starts
    after epoch 2, and what the run validates from then on is the average."""
    import json
    model, opt, result = asgd_run(tmp_path / 'a', 4, asgd_nonmono=50, asgd_latest=0.5)
    log = [json.loads(line) for line in open(tmp_path / 'a' / 'log.jsonl')]
    assert [(r['event'], r['epoch']) for r in log if r['event'].startswith('asgd')] == [('asgd_start', 2)]
    assert '| epoch 2 | 50% of the training budget spent: averaging the weights' in capsys.readouterr().out
    assert opt.averaging and opt.avg_count == 2 * 30 and opt.phase_start == 2
    _, never, _ = asgd_run(tmp_path / 'b', 4, asgd_nonmono=50)
    assert not never.averaging


def test_asgd_latest_is_a_fraction(tmp_path):
    from common.errors import ConfigError
    with pytest.raises(ConfigError, match=r'asgd_latest must be a fraction in \[0, 1\]'):
        asgd_run(tmp_path, 2, asgd_latest=1.5)


def test_weight_decay_needs_an_optimizer_that_applies_it(tmp_path):
    from common.errors import ConfigError
    from common.optimizer import Adam
    from common.run.settings import TrainSettings
    from common.run.loop import train_with_validation
    corpus = np.arange(500) % 7
    with pytest.raises(ConfigError, match='--weight-decay 0.001 is part of the SGD update, which Adam does not do'):
        train_with_validation(Rnnlm(7, 4, 4), Adam(0.01), (corpus, corpus, None),
                              TrainSettings(weight_decay=1e-3, batch_size=2, time_size=5, out_dir=str(tmp_path)))


def test_asgd_needs_the_asgd_optimizer(tmp_path):
    from common.errors import ConfigError
    from common.run.settings import TrainSettings
    from common.run.loop import train_with_validation
    corpus = np.arange(500) % 7
    with pytest.raises(ConfigError, match='--asgd-nonmono averages SGD, not SGD'):
        train_with_validation(Rnnlm(7, 4, 4), SGD(1.0), (corpus, corpus, None),
                              TrainSettings(asgd_nonmono=3, batch_size=2, time_size=5, out_dir=str(tmp_path)))


def test_variable_bptt_refuses_a_trainer_with_other_batching(tmp_path):
    from common.errors import ConfigError
    from common.batching.sentences import SentenceTrainer
    from common.run.settings import TrainSettings
    from common.run.loop import train_with_validation
    corpus = np.arange(500) % 7
    model = Rnnlm(7, 4, 4)
    with pytest.raises(ConfigError, match='--variable-bptt draws windows of the book'):
        train_with_validation(model, SGD(1.0), (corpus, corpus, None),
                              TrainSettings(variable_bptt=True, batch_size=2, time_size=5, out_dir=str(tmp_path)),
                              trainer=SentenceTrainer(model, SGD(1.0), 0))

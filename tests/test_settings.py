"""TrainSettings: built from the shared flags, checked in one place, stored
in the checkpoint and compared on resume; and the gradient-norm log wired
into a whole run."""
import json

import numpy as np
import pytest

from ch_gru.rnnlm import Rnnlm
from common.run.checkpoint import load_checkpoint
from common.run.cli import ArgumentParser, parse_args
from common.errors import ConfigError
from common.optimizer import SGD
from common.run.settings import TrainSettings, add_training_flags
from common.run.loop import train_with_validation

DEFAULTS = dict(lr=1.0, lr_decay=4.0, max_grad=0.25, batch_size=4, time_size=10, max_epoch=2, eval_interval=0,
                eval_batch_size=3, out_dir='runs/x', model_file='M.npz')
CORPUS = np.random.default_rng(7).integers(0, 12, 1201).astype(np.int32)


def parser():
    p = ArgumentParser()
    add_training_flags(p, DEFAULTS)
    return p


def test_from_args_takes_every_flag_and_names_the_files():
    args = parser().parse_args(['--max-grad', 'none', '--valid-interval', '5', '--out-dir', 'o'])
    s = TrainSettings.from_args(args, unit='char', model_file='M.npz')
    assert (s.max_grad, s.valid_interval, s.batch_size, s.max_epoch, s.unit) == (None, 5, 4, 2, 'char')
    assert (s.save_path, s.checkpoint_path, s.resume_lr) == ('o/M.npz', 'o/checkpoint.npz', None)


@pytest.mark.parametrize('change,message', [
    (dict(batch_size=0), r"batch_size must be a positive integer, got 0"),
    (dict(eval_interval=-1), r"eval_interval must be a non-negative integer \(0: none\), got -1"),
    (dict(max_grad=-1.0), r"max_grad must be a positive number or None \(no limit\), got -1.0"),
    (dict(lr_decay=0), r"lr_decay must be a positive number, got 0"),
    (dict(divergence_factor=1.0), r"divergence_factor must be a number greater than 1, got 1.0"),
])
def test_check_refuses_what_a_run_cannot_use(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        TrainSettings(out_dir=str(tmp_path), **change).check(1.0)
    with pytest.raises(ConfigError, match='the learning rate must be a positive number, got 0'):
        TrainSettings(out_dir=str(tmp_path)).check(0)


def run(tmp_path, model_seed=1, resume=None, **kw):
    np.random.seed(model_seed)
    model = Rnnlm(12, 8, 8, num_layers=1, dropout_ratio=0.0)
    settings = TrainSettings(batch_size=4, time_size=10, eval_interval=0, eval_batch_size=3, max_grad=1.0,
                             out_dir=str(tmp_path), checkpoint_path=str(tmp_path / 'c.npz'), **kw)
    train_with_validation(model, SGD(1.0), (CORPUS, CORPUS[:301], None), settings, resume=resume)
    return model, [json.loads(line) for line in open(tmp_path / 'log.jsonl')]


def test_settings_are_stored_in_the_checkpoint_and_compared_on_resume(tmp_path, capsys):
    run(tmp_path, max_epoch=1)
    ck = load_checkpoint(str(tmp_path / 'c.npz'))
    assert ck.settings['max_epoch'] == 1 and ck.settings['max_grad'] == 1.0
    capsys.readouterr()
    _, log = run(tmp_path, max_epoch=2, lr_decay=2.0, resume=ck)
    assert 'settings changed since the checkpoint: max_epoch 1 -> 2; lr_decay 4.0 -> 2.0' in capsys.readouterr().out
    assert next(r for r in log if r['event'] == 'resume')['changes'] == ['max_epoch 1 -> 2', 'lr_decay 4.0 -> 2.0']


def test_the_gradient_norm_log_of_a_run_leaves_training_as_it_was(tmp_path):
    plain, _ = run(tmp_path / 'a', max_epoch=2)
    logged, log = run(tmp_path / 'b', max_epoch=2, grad_norm_interval=10)
    for p, q in zip(plain.params, logged.params):
        np.testing.assert_array_equal(p, q)
    norms = [r for r in log if r['event'] == 'grad_norm']
    assert [(r['iter'], r['epoch']) for r in norms] == [(10, 1), (20, 1), (30, 1), (40, 2), (50, 2), (60, 2)]
    assert all(r['grad_norm'] > 0 for r in norms)


def test_resume_takes_the_shared_flags_from_the_checkpoint(tmp_path):
    run(tmp_path, max_epoch=1, grad_norm_interval=3)
    args, ck = parse_args(parser(), ['--resume', str(tmp_path / 'c.npz'), '--lr', '2'])
    assert ck.given == {'resume', 'lr'}
    assert TrainSettings.from_args(args, ck).resume_lr == 2.0


def test_flag_defaults_not_given_by_the_script_are_the_settings_fields():
    from dataclasses import fields
    p = ArgumentParser()
    add_training_flags(p, dict(lr=1.0, model_file='M.npz', batch_size=7))
    args = p.parse_args([])
    settings = TrainSettings()
    shared = [f.name for f in fields(TrainSettings) if hasattr(args, f.name)]
    assert {'divergence_factor', 'max_divergences', 'lr_decay', 'asgd_latest', 'out_dir', 'seed'} <= set(shared)
    assert {n: getattr(args, n) for n in shared} == {n: getattr(settings, n) if n != 'batch_size' else 7
                                                    for n in shared}
    s = TrainSettings.from_args(args, model_file='M.npz')
    assert (s.divergence_factor, s.max_divergences, s.batch_size) == (4.0, 3, 7)
    with pytest.raises(KeyError):                     # the learning rate has no default of its own
        add_training_flags(ArgumentParser(), dict(model_file='M.npz'))


def test_the_flag_modules_do_not_load_the_array_backend():
    import subprocess
    import sys
    code = ('import sys, common.run.settings, common.run.cli; '
            'print(sorted(m for m in sys.modules if m in ("common.np", "common.backend", "cupy")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'

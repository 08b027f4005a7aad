"""common.run.cli: one-line argument errors and options taken from a checkpoint on --resume."""
import argparse

import numpy as np
import pytest

from common.run.checkpoint import TrainingState, save_checkpoint
from common.run.cli import ArgumentParser, parse_args, positive_float
from common.run.settings import add_checkpoint_flags
from common.optimizer import SGD
from ch_gru.rnnlm import Rnnlm


def parser():
    p = ArgumentParser()
    p.add_argument('--lr', type=positive_float, default=10.0)
    p.add_argument('--hidden-size', type=int, default=650)
    p.add_argument('--out-dir', default='runs/x')
    p.add_argument('--gpu', action='store_true')
    return add_checkpoint_flags(p)


def settings_of(args, checkpoint):
    """TrainSettings from the flags of parser() (the others at their defaults)."""
    from common.run.settings import TrainSettings
    return TrainSettings.from_args(argparse.Namespace(save=None, **vars(args)), checkpoint)


def checkpoint(tmp_path, **options):
    np.random.seed(0)
    path = str(tmp_path / 'c.npz')
    save_checkpoint(path, Rnnlm(5, 4, 4, num_layers=1), SGD(0.5), TrainingState(epoch=1), options=options)
    return path


def test_resume_takes_the_options_not_given(tmp_path):
    saved = dict(lr=20.0, hidden_size=32, out_dir='runs/old', gpu=True, resume=None, checkpoint=None,
                 divergence_factor=8.0, max_divergences=5, gone_option=1)
    path = checkpoint(tmp_path, **saved)
    args, ck = parse_args(parser(), ['--resume', path, '--hidden-size', '64'])
    assert ck.given == {'resume', 'hidden_size'}
    assert (args.hidden_size, args.lr, args.out_dir, args.divergence_factor) == (64, 20.0, 'runs/old', 8.0)
    assert args.gpu is False and args.resume == path            # the machine's, not the checkpoint's
    assert not hasattr(args, 'gone_option')
    settings = settings_of(args, ck)
    assert settings.resume_lr is None and settings.checkpoint_path.endswith('runs/old/checkpoint.npz')
    assert settings.max_divergences == 5 and settings.divergence_factor == 8.0

    args, ck = parse_args(parser(), ['--resume', path, '--lr', '20', '--gpu'])
    assert args.gpu is True and settings_of(args, ck).resume_lr == 20.0     # explicit, even if equal


def test_without_resume_parse_args_is_parse_args():
    args, ck = parse_args(parser(), ['--lr', '3'])
    assert ck is None and vars(args) == vars(parser().parse_args(['--lr', '3']))
    assert settings_of(args, None).resume_lr is None


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(['--lr', '0'])
    assert exc.value.code == 2
    assert capsys.readouterr().err == 'error: argument --lr: 0 is not a positive number (see --help)\n'
    assert isinstance(parser(), argparse.ArgumentParser)

"""The settings of a training run: one typed object, its flags declared once.

:class:`TrainSettings` is everything :func:`common.run.loop.train_with_validation`
is told besides the model, the optimizer and the data. The training scripts
build it from the command line (:func:`add_training_flags` declares the flags
they share, :meth:`TrainSettings.from_args` reads them), it is checked in one
place (:meth:`TrainSettings.check`), stored in the checkpoint, and a resumed
run says which settings differ from the checkpoint's
(:meth:`TrainSettings.changes`).

Like :mod:`common.run.cli`, this module does not import ``common.np``: a script
parses its flags before it chooses the backend.
"""
import math
import numbers
import os
from argparse import BooleanOptionalAction
from dataclasses import asdict, dataclass, fields
from typing import Optional

from common.run.cli import (add_checkpoint_flags, check_output_dir, fraction, nonnegative_float, nonnegative_int,
                        optional_positive_float, positive_float, positive_int)
from common.errors import ConfigError


@dataclass
class TrainSettings:
    """How to train; the defaults are the book's chapter-6 loop without its extras."""
    max_epoch: int = 10
    batch_size: int = 20
    time_size: int = 35
    max_grad: Optional[float] = None       # clip the global gradient norm to this; None: no clipping
    eval_interval: int = 20                # the book's report line every N iterations; 0: none
    eval_batch_size: int = 10
    lr_decay: float = 4.0                  # divide the learning rate by this when valid did not improve
    lr_epoch_factor: float = 1.0           # multiply it by this after every epoch
    max_seconds: Optional[float] = None    # budget of training time (evaluation not counted)
    valid_interval: int = 0                # also validate every N iterations; 0: per epoch only
    grad_norm_interval: int = 0            # log the gradient norm every N iterations; 0: never
    divergence_factor: float = 4.0         # after a divergence, divide the learning rate by this
    max_divergences: int = 3               # stop at this many divergences in a row
    unit: str = 'word'                     # 'char': report nats/char and bpc too
    out_dir: str = 'runs'                  # log.jsonl and the plots
    save_path: Optional[str] = None        # the best parameters
    checkpoint_path: Optional[str] = None
    resume_lr: Optional[float] = None      # on resume, this learning rate instead of the checkpoint's
    seed: Optional[int] = None             # the run's --seed (here: the variable BPTT lengths' generator)
    asgd_nonmono: int = 0                  # NT-ASGD: average once valid is worse than N checks ago; 0: never
    asgd_restarts: int = 0                 # NT-ASGD fine-tuning: restart from the average when it stalls, N times
    asgd_latest: float = 0.0               # NT-ASGD: average at the latest once this fraction of the budget is spent
    weight_decay: float = 0.0              # L2 on every weight in the SGD update: g + λ·p
    variable_bptt: bool = False            # draw each window's length around time_size, lr scaled by it

    #: Settings that may change on resume without a remark: where files go.
    PLACES = ('out_dir', 'save_path', 'checkpoint_path', 'resume_lr')

    @classmethod
    def from_args(cls, args, checkpoint=None, unit='word', model_file='model.npz'):
        """From the flags of :func:`add_training_flags` (``args`` as
        :func:`common.run.cli.parse_args` returns it with ``checkpoint``); an
        explicit --lr on resume becomes ``resume_lr``."""
        given = getattr(checkpoint, 'given', ())
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in vars(args).items() if k in names}
        out_dir = args.out_dir
        return cls(**values, unit=unit, save_path=args.save or os.path.join(out_dir, model_file),
                   checkpoint_path=args.checkpoint or os.path.join(out_dir, 'checkpoint.npz'),
                   resume_lr=args.lr if 'lr' in given else None)

    def check(self, lr):
        """Raise :class:`ConfigError` for a rate, size or path the run cannot
        use (``lr``: the learning rate it will start with). Creates the
        output directories."""
        def number(value, ok):
            return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and ok(value)

        if not number(lr, lambda v: v > 0):
            raise ConfigError(f"the learning rate must be a positive number, got {lr!r}: pass e.g. --lr 10")
        for name in ('max_epoch', 'batch_size', 'time_size', 'eval_batch_size', 'max_divergences'):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ('eval_interval', 'valid_interval', 'grad_norm_interval', 'asgd_nonmono', 'asgd_restarts'):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer (0: none), got {value!r}")
        for name in ('max_grad', 'max_seconds'):
            value = getattr(self, name)
            if value is not None and not number(value, lambda v: v > 0):
                raise ConfigError(f"{name} must be a positive number or None (no limit), got {value!r}")
        if not number(self.asgd_latest, lambda v: 0 <= v <= 1):
            raise ConfigError(f"asgd_latest must be a fraction in [0, 1] (0: off), got {self.asgd_latest!r}")
        if not number(self.weight_decay, lambda v: v >= 0):
            raise ConfigError(f"weight_decay must be a non-negative number (0: none), got {self.weight_decay!r}")
        for name in ('lr_decay', 'lr_epoch_factor'):
            if not number(getattr(self, name), lambda v: v > 0):
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        if not number(self.divergence_factor, lambda v: v > 1):
            raise ConfigError(f"divergence_factor must be a number greater than 1, got {self.divergence_factor!r}")
        check_output_dir(self.out_dir)
        for path, flag in ((self.save_path, '--save'), (self.checkpoint_path, '--checkpoint')):
            if path:
                check_output_dir(os.path.dirname(os.path.abspath(path)), flag)

    def to_dict(self):
        return asdict(self)

    def changes(self, saved):
        """'name saved -> now' for each setting that differs from ``saved``
        (a checkpoint's ``to_dict()``), places left out."""
        return [f'{k} {saved[k]!r} -> {v!r}' for k, v in self.to_dict().items()
                if k in saved and k not in self.PLACES and saved[k] != v]


def add_training_flags(parser, defaults, helps=None):
    """Declare the flags every training script shares, with this script's
    ``defaults`` (flag name without dashes -> value: lr, lr_decay,
    lr_epoch_factor, max_grad, batch_size, time_size, max_epoch,
    eval_interval, eval_batch_size, out_dir, model_file; optional
    asgd_nonmono, asgd_restarts, asgd_latest, weight_decay, variable_bptt) and ``helps``
    (the same keys -> help text) where a script says more. Returns the
    'training' group, for a script's own training flags."""
    d, h = defaults, {**TRAINING_HELP, **(helps or {})}
    g = parser.add_argument_group('training')
    g.add_argument('--lr', type=positive_float, default=d['lr'], help=h['lr'])
    g.add_argument('--lr-decay', type=positive_float, default=d['lr_decay'], help=h['lr_decay'])
    g.add_argument('--lr-epoch-factor', type=positive_float, default=d.get('lr_epoch_factor', 1.0),
                   help=h['lr_epoch_factor'])
    g.add_argument('--max-grad', type=optional_positive_float, default=d['max_grad'], help=h['max_grad'])
    g.add_argument('--batch-size', type=positive_int, default=d['batch_size'], help=h['batch_size'])
    g.add_argument('--time-size', type=positive_int, default=d['time_size'], help=h['time_size'])
    g.add_argument('--max-epoch', type=positive_int, default=d['max_epoch'], help=h['max_epoch'])
    g.add_argument('--max-seconds', type=positive_float, default=None, help=h['max_seconds'])
    g.add_argument('--eval-interval', type=nonnegative_int, default=d['eval_interval'], help=h['eval_interval'])
    g.add_argument('--valid-interval', type=nonnegative_int, default=0, help=h['valid_interval'])
    g.add_argument('--grad-norm-interval', type=nonnegative_int, default=0, help=h['grad_norm_interval'])
    g.add_argument('--eval-batch-size', type=positive_int, default=d['eval_batch_size'], help=h['eval_batch_size'])
    g.add_argument('--asgd-nonmono', type=nonnegative_int, default=d.get('asgd_nonmono', 0), metavar='N',
                   help=h['asgd_nonmono'])
    g.add_argument('--asgd-restarts', type=nonnegative_int, default=d.get('asgd_restarts', 0), metavar='N',
                   help=h['asgd_restarts'])
    g.add_argument('--asgd-latest', type=fraction, default=d.get('asgd_latest', 0.0), metavar='F',
                   help=h['asgd_latest'])
    g.add_argument('--weight-decay', type=nonnegative_float, default=d.get('weight_decay', 0.0), metavar='λ',
                   help=h['weight_decay'])
    g.add_argument('--variable-bptt', action=BooleanOptionalAction, default=d.get('variable_bptt', False),
                   help=h['variable_bptt'])
    g.add_argument('--seed', type=int, default=None, help=h['seed'])
    g.add_argument('--gpu', action='store_true', help='run on CUDA through CuPy')
    out = parser.add_argument_group('output')
    out.add_argument('--out-dir', default=d['out_dir'], help='directory for log.jsonl and the plots')
    out.add_argument('--save', default=None, help=f"write the best parameters (with the vocabulary) here (.npz); "
                                                  f"default <out-dir>/{d['model_file']}")
    add_checkpoint_flags(parser)
    return g


TRAINING_HELP = {
    'lr': 'learning rate',
    'lr_decay': 'divide the learning rate by this when valid perplexity does not improve over an epoch (1: never)',
    'lr_epoch_factor': 'multiply the learning rate by this after every epoch (1: never)',
    'max_grad': "clip the global gradient norm to this ('none' to disable)",
    'batch_size': 'rows per batch',
    'time_size': 'truncated BPTT length',
    'max_epoch': 'epochs at most',
    'max_seconds': 'stop once this many seconds were spent training (evaluation not counted); the epoch in '
                   'progress is evaluated',
    'eval_interval': 'print the training perplexity every N iterations (0: never)',
    'valid_interval': 'evaluate on valid every N iterations too, and draw curve.png (0: per epoch only)',
    'grad_norm_interval': 'write the gradient norm (before clipping) to log.jsonl every N iterations (0: never)',
    'eval_batch_size': 'batch size of evaluation',
    'seed': 'random seed (weights, dropout, batch order)',
    'asgd_nonmono': 'NT-ASGD (averaged SGD): start averaging the weights once the valid perplexity of an epoch '
                    'is worse than the best of those more than N epochs before it; validation, the saved '
                    'parameters and test then use the average (0: plain SGD, never average)',
    'asgd_restarts': "NT-ASGD's fine-tuning stage (AWD-LSTM): once the average's valid perplexity is worse than "
                     "the best of its own checks more than --asgd-nonmono epochs before, set the weights to the "
                     "average and start a new average from there; at most N times (0: never; nothing without "
                     "--asgd-nonmono)",
    'asgd_latest': 'NT-ASGD: start averaging at the latest once this fraction of the training budget '
                   '(--max-epoch, or --max-seconds when given) is spent, so that a short run still ends with '
                   'an average; judged at epoch ends (0: only the non-monotone rule)',
    'weight_decay': 'L2 weight decay λ in the SGD update, p ← p − lr·(g + λ·p) (AWD-LSTM: 1.2e-6; 0: none)',
    'variable_bptt': "draw each iteration's window length around --time-size (T with probability 0.95, else "
                     "T/2; then N(., 5), at least 5) and scale the learning rate by length / T, as AWD-LSTM",
}


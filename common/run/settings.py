"""The settings of a training run: one typed object, its flags declared once.

:class:`TrainSettings` is everything :func:`common.run.loop.train_with_validation`
is told besides the model, the optimizer and the data. The training scripts
build it from the command line (:func:`add_training_flags` declares the flags
they share from one table, :data:`FLAGS`, with the defaults of
:class:`TrainSettings`; :meth:`TrainSettings.from_args` reads them), it is checked in one
place (:meth:`TrainSettings.check`), stored in the checkpoint, and a resumed
run says which settings differ from the checkpoint's
(:meth:`TrainSettings.changes`).

Like :mod:`common.run.cli`, this module does not import ``common.np``: a script
parses its flags before it chooses the backend.
"""
import math
import numbers
import os
from argparse import SUPPRESS, BooleanOptionalAction
from dataclasses import asdict, dataclass, fields
from typing import Optional

from common.run.cli import (check_output_dir, fraction, greater_than_one, nonnegative_float, nonnegative_int,
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
    dtype: str = 'float32'                 # the model's floats; float64 to compare runs beyond float32 rounding

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


#: The argument groups of the shared flags, in --help order.
GROUPS = {'training': 'training', 'output': 'output', 'checkpoint': 'checkpoints and divergence'}

#: The flags every training script shares, in --help order: (group, flag, argparse keywords). A flag
#: named after a :class:`TrainSettings` field (``--batch-size``: ``batch_size``) has that field's
#: default unless the script's ``defaults`` give another; ``script=True``: the script must give it.
#: The help texts are :data:`TRAINING_HELP`.
FLAGS = (
    ('training', '--lr', dict(type=positive_float, script=True)),
    ('training', '--lr-decay', dict(type=positive_float)),
    ('training', '--lr-epoch-factor', dict(type=positive_float)),
    ('training', '--max-grad', dict(type=optional_positive_float)),
    ('training', '--batch-size', dict(type=positive_int)),
    ('training', '--time-size', dict(type=positive_int)),
    ('training', '--max-epoch', dict(type=positive_int)),
    ('training', '--max-seconds', dict(type=positive_float)),
    ('training', '--eval-interval', dict(type=nonnegative_int)),
    ('training', '--valid-interval', dict(type=nonnegative_int)),
    ('training', '--grad-norm-interval', dict(type=nonnegative_int)),
    ('training', '--eval-batch-size', dict(type=positive_int)),
    ('training', '--asgd-nonmono', dict(type=nonnegative_int, metavar='N')),
    ('training', '--asgd-restarts', dict(type=nonnegative_int, metavar='N')),
    ('training', '--asgd-latest', dict(type=fraction, metavar='F')),
    ('training', '--weight-decay', dict(type=nonnegative_float, metavar='λ')),
    ('training', '--variable-bptt', dict(action=BooleanOptionalAction)),
    ('training', '--seed', dict(type=int)),
    ('training', '--dtype', dict(choices=['float32', 'float64'])),
    ('training', '--gpu', dict(action='store_true')),
    ('training', '--no-cuda-graph', dict(action='store_true')),
    ('training', '--tf32', dict(action='store_true')),
    ('training', '--processes', dict(type=positive_int, default=1, metavar='K')),
    ('output', '--out-dir', {}),
    ('output', '--save', {}),
    ('checkpoint', '--resume', dict(metavar='PATH')),
    ('checkpoint', '--checkpoint', dict(metavar='PATH')),
    ('checkpoint', '--divergence-factor', dict(type=greater_than_one, metavar='F')),
    ('checkpoint', '--max-divergences', dict(type=positive_int, metavar='N')),
)


def settings_defaults():
    """Field name -> default of :class:`TrainSettings`: the flags' defaults."""
    return {f.name: f.default for f in fields(TrainSettings)}


def add_flags(parser, groups, defaults=None, helps=None, hidden=()):
    """Declare the flags of :data:`FLAGS` in ``groups`` (keys of :data:`GROUPS`),
    with the script's ``defaults`` and ``helps`` where it gives them, and the
    flags named in ``hidden`` (dests) left out of --help; returns the
    argument groups by key."""
    d, settings = defaults or {}, settings_defaults()
    h = {**TRAINING_HELP, **(helps or {})}
    h['save'] = h['save'].format(model_file=d.get('model_file', 'model.npz'))
    made = {}
    for key, flag, options in FLAGS:
        if key not in groups:
            continue
        if key not in made:
            made[key] = parser.add_argument_group(GROUPS[key])
        dest, kw = flag[2:].replace('-', '_'), dict(options)
        if kw.pop('script', False):
            kw['default'] = d[dest]                 # no TrainSettings field: the script says
        elif dest in d:
            kw['default'] = d[dest]
        elif dest in settings:
            kw['default'] = settings[dest]
        made[key].add_argument(flag, help=SUPPRESS if dest in hidden else h[dest], **kw)
    return made


def add_training_flags(parser, defaults, helps=None, hidden=()):
    """Declare the flags every training script shares (:data:`FLAGS`), with
    this script's ``defaults`` (flag name without dashes -> value; ``lr`` is
    required, ``model_file`` names the saved parameters in --save's help
    (default model.npz), every other flag named after a :class:`TrainSettings`
    field defaults to that field: e.g. lr_decay, max_grad, batch_size,
    out_dir, asgd_nonmono, variable_bptt) and ``helps`` (the same keys -> help text) where a script
    says more; ``hidden``: flags to leave out of --help (a script that has no
    use for them). Returns the 'training' group, for a script's own training flags."""
    return add_flags(parser, ('training', 'output', 'checkpoint'), defaults, helps, hidden)['training']


def add_checkpoint_flags(parser, defaults=None, helps=None):
    """--resume, --checkpoint, --divergence-factor, --max-divergences: the
    flags of the run's reliability features (part of :func:`add_training_flags`;
    read by :meth:`TrainSettings.from_args`). Returns ``parser``."""
    add_flags(parser, ('checkpoint',), defaults, helps)
    return parser


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
    'dtype': "the model's floating-point type: float32 trains; float64 is for checking that two runs compute "
             "the same thing (e.g. one process against mpiexec -n 2, 1 thread against 2), since float32 "
             "rounding differences grow in training (docs/distributed.md)",
    'gpu': 'run on CUDA through CuPy',
    'tf32': 'with --gpu, float32 products in TF32 on GPUs that have it (faster, ~1e-3 relative error per '
            'product; off: full float32)',
    'no_cuda_graph': 'with --gpu, launch every kernel and product from Python instead of one CUDA graph per '
                     'training and evaluation step (the graphs are on by default; the numbers are the same)',
    'processes': 'train data-parallel on K processes: starts mpiexec -n K with this command, BLAS threads '
                 'shared out, and a rank that dies reported in one line (pip install -e ".[mpi]"; '
                 'docs/distributed.md)',
    'out_dir': 'directory for log.jsonl and the plots',
    'save': 'write the best parameters (with the vocabulary) here (.npz); default <out-dir>/{model_file}',
    'resume': "continue the run saved in this checkpoint; options not given on the command line are the "
              "checkpoint's, an explicit --lr replaces its current learning rate",
    'checkpoint': 'write the checkpoint (parameters, optimizer, position, RNG, options) here at every epoch end '
                  'and on Ctrl-C; default <out-dir>/checkpoint.npz',
    'divergence_factor': 'on a NaN/inf loss or gradient norm go back to the last good state and divide the '
                         'learning rate by this',
    'max_divergences': 'stop with an error at this many divergences in a row',
}


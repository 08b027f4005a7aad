"""What every script shares: argument types, backend selection, and turning
user errors into one line on stderr instead of a traceback.

Nothing here imports ``common.np`` at import time, so a script can parse
``--gpu`` before the backend is chosen.
"""
import argparse
import os
import sys
import tempfile

from common.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument --lr: -1 is not a
    positive number (see --help)`` and exit status 2, without the usage block."""

    def error(self, message):
        from common.parallel import communicator      # every rank parses alike: rank 0 says it
        self.exit(2, f'error: {message} (see --help)\n' if communicator.launched_rank() == 0 else None)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the uninformative None and False."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _number(kind, test, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
        if not test(value):
            raise argparse.ArgumentTypeError(f'{text} is not {what}')
        return value
    return parse


positive_int = _number(int, lambda v: v > 0, 'a positive integer')
nonnegative_int = _number(int, lambda v: v >= 0, 'a non-negative integer')
positive_float = _number(float, lambda v: v > 0, 'a positive number')
nonnegative_float = _number(float, lambda v: v >= 0, 'a non-negative number')
ratio = _number(float, lambda v: 0 <= v < 1, 'in [0, 1)')
fraction = _number(float, lambda v: 0 <= v <= 1, 'a fraction in [0, 1]')
greater_than_one = _number(float, lambda v: v > 1, 'a number greater than 1')


def optional_positive_float(text):
    """A positive number, or 'none' to switch the feature off."""
    if text.lower() in ('none', 'off', '0'):
        return None
    return positive_float(text)


def select_backend(gpu, cuda_graph=True, tf32=False):
    """Turn the GPU on (before the first ``import common.np``) and import the
    backend; a missing CuPy or device raises BackendError with the fix.
    ``cuda_graph=False`` (``--no-cuda-graph``) keeps the GPU path eager;
    ``tf32`` (``--tf32``) lets its products use TF32."""
    from common import config
    from common.parallel import communicator
    if not cuda_graph:
        config.CUDA_GRAPH = False
    if tf32:
        config.TF32 = True
    if gpu:
        config.GPU = True
        communicator.world().use_gpu()       # one GPU per process, by its rank on the node
    from common import backend
    backend.check_backend()
    if backend.GPU and communicator.world().size > 1:
        communicator.world().connect_gpus()
    return backend


def run(main, argv=None):
    """Run ``main(argv)``; a :class:`UserError` becomes ``error: <message>`` on
    stderr and exit status 2 (argparse's status for bad arguments). Started
    by mpiexec on several processes, only rank 0 prints, and a rank that
    fails ends the job (:func:`run_ranks`)."""
    from common.parallel import communicator
    if communicator.launched_size() > 1:
        return run_ranks(main, argv)
    try:
        return main(argv)
    except UserError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:        # a second Ctrl-C, or one before training started
        print('interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:          # output piped into head & co.
        sys.stderr.close()
        return 1


def run_ranks(main, argv):
    """:func:`run` on one of several MPI processes. Ranks other than 0 print
    nothing on stdout. An error every rank meets alike (bad input) is one
    line from rank 0 and status 2; one a rank meets alone, or any other
    exception, is one line naming the rank, and MPI_Abort ends the job."""
    from common.parallel import communicator
    try:
        world = communicator.world()
    except UserError as exc:         # no mpi4py, or a broken one: no MPI to agree through
        if communicator.launched_rank() == 0:
            print(f'error: {exc}', file=sys.stderr)
        return 2
    if not world.is_root:
        sys.stdout = open(os.devnull, 'w')
    try:
        return main(argv)
    except UserError as exc:
        return world.exit_together(f'error: {exc}', 2)
    except KeyboardInterrupt:
        return world.exit_together('interrupted', 130)
    except Exception as exc:
        world.crash(f'{type(exc).__name__}: {exc}')


def check_output_dir(path, flag='--out-dir'):
    """Create ``path`` and make sure a file can be written there, before any
    training (``flag`` names the option to change in the message)."""
    from common.errors import ConfigError
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory {path}: {exc.strerror}: choose another {flag}") from None
    try:
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise ConfigError(f"directory {path} is not writable ({exc.strerror}): choose another {flag}") from None
    return path


# -- checkpoints and resume ---------------------------------------------------------

#: Options that describe the machine rather than the run: --resume never takes them from the checkpoint.
#: (The flags themselves, --resume and --checkpoint among them: :mod:`common.run.settings`.)
NOT_RESUMED = ('resume', 'gpu', 'no_cuda_graph', 'tf32', 'processes')   # where to run: this command's, not the checkpoint's
_UNSET = object()


def parse_args(parser, argv=None):
    """``(args, checkpoint)``. Without --resume: ``parser.parse_args(argv)``
    and None. With --resume PATH: the checkpoint is loaded (host arrays only,
    the backend is not chosen yet) and every option not given in ``argv``
    takes its value from the checkpoint, except those in NOT_RESUMED;
    ``checkpoint.given`` holds the names of the options given in ``argv``."""
    args = parser.parse_args(argv)
    if not getattr(args, 'resume', None):
        return args, None
    from common.run.checkpoint import load_checkpoint
    checkpoint = load_checkpoint(args.resume)
    probe = parser.parse_args(argv, argparse.Namespace(**{name: _UNSET for name in vars(args)}))
    given = {name for name, value in vars(probe).items() if value is not _UNSET}
    saved = {name: value for name, value in checkpoint.options.items()
             if name in vars(args) and name not in given and name not in NOT_RESUMED}
    checkpoint.given = given
    return argparse.Namespace(**{**vars(args), **saved}), checkpoint


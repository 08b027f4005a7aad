"""What every script shares: argument types, backend selection, and turning
user errors into one line on stderr instead of a traceback.

Nothing here imports ``common.np`` at import time, so a script can parse
``--gpu`` before the backend is chosen.
"""
import argparse
import os
import sys

from common.errors import UserError


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
ratio = _number(float, lambda v: 0 <= v < 1, 'in [0, 1)')


def optional_positive_float(text):
    """A positive number, or 'none' to switch the feature off."""
    if text.lower() in ('none', 'off', '0'):
        return None
    return positive_float(text)


def select_backend(gpu):
    """Turn the GPU on (before the first ``import common.np``) and import the
    backend; a missing CuPy or device raises BackendError with the fix."""
    from common import config
    if gpu:
        config.GPU = True
    import common.np as backend
    backend.check_backend()
    return backend


def run(main, argv=None):
    """Run ``main(argv)``; a :class:`UserError` becomes ``error: <message>`` on
    stderr and exit status 2 (argparse's status for bad arguments)."""
    try:
        return main(argv)
    except UserError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except BrokenPipeError:          # output piped into head & co.
        sys.stderr.close()
        return 1


def check_output_dir(path):
    """Create ``path`` and make sure we can write there, before any training."""
    from common.errors import ConfigError
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {path}: {exc.strerror}: choose another --out-dir") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"output directory {path} is not writable: choose another --out-dir")
    return path

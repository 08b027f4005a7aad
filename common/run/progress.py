"""Progress bars on a terminal, silence elsewhere.

tqdm draws the bar (with rate and ETA) when stderr is a terminal; when output
goes to a file or a pipe the loops run bare, so logs hold only the report lines.
"""
import math
import sys

from tqdm import tqdm


def interactive():
    return sys.stderr.isatty()


def progress(iterable, total=None, desc=None, unit='it'):
    """``iterable`` wrapped in a tqdm bar on a terminal, unchanged otherwise."""
    if not interactive():
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def progress_bar(total, desc=None, unit='it'):
    """A tqdm bar to ``update()`` and ``close()`` on a terminal, None otherwise."""
    if not interactive():
        return None
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def write(line):
    """Print a report line without breaking a bar that is being drawn."""
    if interactive():
        tqdm.write(line)
    else:
        print(line, flush=True)


def describe_ppl(ppl, unit='word'):
    """'ppl 123.45', or for character models the loss in nats/char and bits
    per character as well: loss = ln(ppl) nats = ln(ppl) / ln 2 bits."""
    if unit == 'char':
        nats = math.log(ppl)
        return f'loss {nats:.4f} nats/char | {nats / math.log(2):.4f} bpc | ppl {ppl:.3f}'
    return f'ppl {ppl:.2f}'

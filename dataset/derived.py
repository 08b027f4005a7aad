"""Small corpora derived from the real files, for experiments that must fit
in minutes (docs/regularisation.md) and for the GPU check.

Each function finds its inputs (``data_dir``, then ``$DLFS_DATA_DIR``, then
the download cache, as :mod:`dataset.download`; PTB files are verified by
their MD5 and downloaded when missing), writes the files it derives into
``out`` and returns ``(train, valid, test)`` paths. A missing input is a
one-line :class:`DataError`.

* :func:`ptb_mini`: train on ptb.test.txt, validate on the first half of the
  lines of ptb.valid.txt, test on the second half;
* :func:`wikitext2_halves`: train on WikiText-2's valid.txt, validate and
  test on the halves of its test.txt;
* :func:`ptb_lines`: the first n lines of ptb.test.txt to train on, the next
  n // 5 to validate and the n // 5 after those to test.
"""
import os

from common.errors import DataError
from common.run.fileio import atomic_file
from dataset import ptb
from dataset.download import search_dirs


def find(name, subdir, data_dir=None):
    """The local file ``name``, looked for in ``subdir`` of each search
    directory, then directly in it; :class:`DataError` when it is nowhere."""
    dirs = search_dirs(data_dir)
    for d in dirs:
        for candidate in (os.path.join(d, subdir, name), os.path.join(d, name)):
            if os.path.isfile(candidate):
                return candidate
    raise DataError(f"{subdir}/{name} not found in {', '.join(dirs)}: put it there or pass --data-dir DIR")


def read_lines(path):
    """The lines of a UTF-8 text file, with their line ends."""
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.readlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}): give the original file") \
            from None
    if not lines:
        raise DataError(f"{path} is empty: give the original file")
    return lines


def write_lines(path, lines):
    """Write ``lines`` (with their line ends) to ``path`` atomically; the path."""
    with atomic_file(path, 'w') as f:
        f.writelines(lines)
    return path


def halves(path, out, name):
    """``out``/NAME.valid.txt and ``out``/NAME.test.txt: the first and the
    second half of the lines of ``path`` (the second the longer by one for an
    odd count)."""
    lines = read_lines(path)
    half = len(lines) // 2
    return (write_lines(os.path.join(out, f'{name}.valid.txt'), lines[:half]),
            write_lines(os.path.join(out, f'{name}.test.txt'), lines[half:]))


def ptb_mini(data_dir=None, out='.'):
    """PTB-mini: ptb.test.txt as the training file, the halves of ptb.valid.txt."""
    return (ptb.path('test', data_dir), *halves(ptb.path('valid', data_dir), out, 'ptb-mini'))


def wikitext2_halves(data_dir=None, out='.'):
    """WikiText-2 at a small scale: its valid.txt to train on, the halves of its test.txt."""
    train = find('valid.txt', 'wikitext-2', data_dir)
    return (train, *halves(find('test.txt', 'wikitext-2', data_dir), out, 'wikitext-2'))


def ptb_lines(n, data_dir=None, out='.'):
    """train / valid / test of n, n // 5 and n // 5 lines of ptb.test.txt."""
    source = ptb.path('test', data_dir)
    lines = read_lines(source)
    k = n // 5
    if len(lines) < n + 2 * k:
        raise DataError(f"{source} has {len(lines)} lines, fewer than the {n + 2 * k} asked for: ask for fewer")
    parts = lines[:n], lines[n:n + k], lines[n + k:n + 2 * k]
    return tuple(write_lines(os.path.join(out, f'{name}.txt'), part)
                 for name, part in zip(('train', 'valid', 'test'), parts))


#: The derived corpora by name (scripts/experiment_regularised.py --corpus).
CORPORA = {'ptb-mini': ptb_mini, 'wikitext-2': wikitext2_halves}


def corpus_files(name, data_dir, out):
    """(train, valid, test) paths of the corpus ``name`` of :data:`CORPORA`, derived files written into ``out``."""
    if name not in CORPORA:
        raise DataError(f"unknown derived corpus {name!r}: choose from {', '.join(CORPORA)}")
    return CORPORA[name](data_dir, out)

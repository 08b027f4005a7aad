"""Finding, downloading, verifying and caching corpus files.

A file is looked for, in order, in
  1. the directory passed by the caller (``--data-dir``),
  2. the directory in the environment variable ``DLFS_DATA_DIR``,
  3. the directory the loader passes as ``beside``, where the book keeps its
     data: beside the loader's module (``dataset/`` for PTB),
  4. the cache, ``$DLFS_CACHE_DIR`` or ``~/.cache/dlfs-gru``,
each directly and in its corpus subfolder (``ptb/``, ``shakespeare/``). A file
missing everywhere is downloaded into the cache from the first mirror that
answers; every file with a known MD5 is verified before use.
"""
import hashlib
import os
import urllib.error
import urllib.request

from common.errors import DataError
from common.run.fileio import atomic_file

DATA_DIR_ENV = 'DLFS_DATA_DIR'
CACHE_DIR_ENV = 'DLFS_CACHE_DIR'
TIMEOUT = 30


def cache_dir(subdir=''):
    base = os.environ.get(CACHE_DIR_ENV) or os.path.join(os.path.expanduser('~'), '.cache', 'dlfs-gru')
    return os.path.join(base, subdir)


def search_dirs(data_dir=None, beside=None):
    """The directories searched, in order: ``data_dir``, ``$DLFS_DATA_DIR``,
    ``beside`` (a loader's own directory, the book's place), the cache."""
    dirs = [d for d in (data_dir, os.environ.get(DATA_DIR_ENV), beside) if d]
    return dirs + [cache_dir()]


def md5sum(path):
    h = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def verify(path, md5):
    if md5 is None:
        return path
    actual = md5sum(path)
    if actual != md5:
        raise DataError(f"{path} has MD5 {actual}, expected {md5}: the file is damaged or not the "
                        f"published one; delete it to download it again, or replace it with the original")
    return path


def fetch(name, subdir, mirrors, md5=None, data_dir=None, download=True, beside=None):
    """Path of the verified file ``name``: found locally (in
    :func:`search_dirs`, ``beside`` among them) or downloaded into the cache.
    Raises :class:`DataError` naming the file, the directories searched and
    how to supply it."""
    for d, how in ((data_dir, '--data-dir'), (os.environ.get(DATA_DIR_ENV), DATA_DIR_ENV)):
        if d and not os.path.isdir(d):
            raise DataError(f"data directory {d} (from {how}) does not exist: point {how} at an existing directory")
    for d in search_dirs(data_dir, beside):
        for candidate in (os.path.join(d, name), os.path.join(d, subdir, name)):
            if os.path.isfile(candidate):
                return verify(candidate, md5)
    searched = ', '.join(search_dirs(data_dir, beside))
    if not download:
        raise DataError(f"{name} not found in {searched}: put it in one of them or pass --data-dir DIR")
    target = os.path.join(cache_dir(subdir), name)
    errors = []
    for base in mirrors:
        url = base + name
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response, atomic_file(target) as out:
                while block := response.read(1 << 20):
                    out.write(block)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        try:
            return verify(target, md5)
        except DataError as exc:
            os.unlink(target)
            errors.append(f"{url}: {exc}")
    raise DataError(f"{name} not found in {searched} and the download failed ({'; '.join(errors)}): "
                    f"copy the file into one of those directories, pass --data-dir DIR or set {DATA_DIR_ENV}")

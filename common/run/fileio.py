"""Safe files: atomic writes and .npz archives that cannot run code.

Every file the framework writes goes through :func:`atomic_file`: the data
goes to a temporary file in the same directory, is flushed to disk, and only
then renamed over the target, so a crash mid-write leaves the old file whole.
The file gets the permissions a plain ``open(path, 'w')`` would give it: those
of the file it replaces, or ``0o666`` less the process umask for a new one.
Archives are plain ``.npz`` read with ``allow_pickle=False`` plus one JSON
string of metadata; loading one can never execute code.
"""
import contextlib
import json
import os
import stat
import tempfile
import zipfile

import numpy

from common.errors import CheckpointError, ConfigError

META_KEY = '__meta__'


@contextlib.contextmanager
def atomic_file(path, mode='wb'):
    """Open a temporary file that replaces ``path`` when the block succeeds."""
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}: choose a writable directory") from None
    try:
        with os.fdopen(fd, mode) as f:
            os.chmod(tmp, _plain_write_mode(path))   # mkstemp made it 0600
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _plain_write_mode(path):
    """The mode ``open(path, 'w')`` leaves ``path`` with: an existing file
    keeps its own, a new one gets 0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    """The process umask. Read from /proc where it is shown (setting it to
    read it back would race with other threads creating files)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_npz(path, arrays, meta):
    """Write ``arrays`` (name -> host array) and ``meta`` (JSON-able) atomically."""
    payload = dict(arrays)
    payload[META_KEY] = numpy.array(json.dumps(meta))
    with atomic_file(path) as f:
        numpy.savez(f, **payload)


def load_npz(path, kind='parameter file'):
    """Read what :func:`save_npz` wrote: (arrays, meta). Any damage to the file
    (missing, truncated, flipped bytes, not an archive, pickled data) becomes a
    :class:`CheckpointError` naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such {kind}: check the path")
    damaged = (f"{path} is unreadable ({{}}): the file is truncated or corrupted; "
               f"use an intact file written by this framework")
    not_kind = f"{path} is not a {kind} written by this framework (no metadata in it)"
    try:
        with open(path, 'rb') as f:
            magic = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror}): check its permissions") from None
    if not b'PK\x03\x04'.startswith(magic):     # every .npz starts with a zip entry; shorter: truncated
        pickled = ("; it is a pickle (the book's save_params writes those): a model's load_params reads the "
                   "book's parameter pickles, and scripts/convert_book_weights.py turns one into a file of "
                   "this framework" if magic[:1] == b'\x80' else '')    # the opcode that starts pickle protocol 2+
        raise CheckpointError(f"{path} is not a {kind} written by this framework (not an .npz archive, or its "
                              f"first bytes are damaged): check the path{pickled}")
    # Any exception while parsing a damaged file (numpy's header parser alone
    # raises SyntaxError, tokenize.TokenError, ValueError, ...) means damage.
    try:
        _check_crc(path)
        archive = numpy.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(damaged.format(_reason(exc))) from None
    if not isinstance(archive, numpy.lib.npyio.NpzFile):
        raise CheckpointError(not_kind)
    with archive:
        if META_KEY not in archive.files:
            raise CheckpointError(not_kind)
        try:
            arrays = {name: archive[name] for name in archive.files}
            meta = json.loads(str(arrays.pop(META_KEY)))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(damaged.format(_reason(exc))) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a {kind}: its metadata is not a JSON object")
    return arrays, meta


def _check_crc(path):
    """Verify the CRC-32 of every member of a zip archive before numpy reads
    it: numpy parses each array's header first and may stop short of the end
    of a member, where zipfile would check its CRC, so a flipped byte in a
    header could otherwise load as an array of another shape."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if len(set(names)) != len(names):
            raise zipfile.BadZipFile('a member name occurs twice')
        for info in z.infolist():      # opened by entry, not by name: headers are compared too
            with z.open(info) as member:
                while member.read(1 << 20):
                    pass


def _reason(exc):
    return f"{exc.__class__.__name__}: {exc}".splitlines()[0]

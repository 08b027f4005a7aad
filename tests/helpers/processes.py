"""The one way tests start a child process: a script, a program or a line of code
on this checkout's code (whichever checkout the package was installed from)."""
import os
import subprocess
import sys

from helpers import FAKE_CUPY, ROOT, TESTS

#: Variables by which a launcher or a switch would change what a child does: never inherited.
CLEARED = ('DLFS_GPU', 'DLFS_MPI_TIMEOUT', 'PMI_SIZE', 'PMI_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK',
           'MV2_COMM_WORLD_SIZE', 'MV2_COMM_WORLD_RANK')


def environment(extra=None, fake_cupy=False, threads=None):
    """The child's environment: this checkout (and tests/, for ``helpers``) first on
    PYTHONPATH, the stand-in CuPy before them with ``fake_cupy``, matplotlib's Agg
    backend, ``threads`` BLAS threads when given; ``extra`` last (it may set
    PYTHONPATH itself, e.g. to hide a module)."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    paths = ([FAKE_CUPY] if fake_cupy else []) + [ROOT, TESTS] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else [])
    env.update(PYTHONPATH=os.pathsep.join(paths), MPLBACKEND='Agg')
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    env.update(extra or {})
    return env


def command(code_or_file, args=(), mpi=0):
    """``python FILE args`` (a path ending in .py) or ``python -c CODE args``; under
    ``mpiexec -n mpi`` when ``mpi`` > 0."""
    launcher = ['mpiexec', '-n', str(mpi)] if mpi else []
    target = [code_or_file] if code_or_file.endswith('.py') else ['-c', code_or_file]
    return launcher + [sys.executable, *target, *map(str, args)]


def run_python(code_or_file, env_extra=None, *args, fake_cupy=False, mpi=0, threads=None, timeout=300):
    """Run it to the end: a CompletedProcess with text stdout and stderr."""
    return subprocess.run(command(code_or_file, args, mpi), env=environment(env_extra, fake_cupy, threads),
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def start_python(code_or_file, env_extra=None, *args, fake_cupy=False, mpi=0, threads=None):
    """Start it and return the Popen, stdout and stderr piped as text (signal tests)."""
    return subprocess.Popen(command(code_or_file, args, mpi), env=environment(env_extra, fake_cupy, threads),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)

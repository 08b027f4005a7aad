"""Processes of a data-parallel run, and how they talk: the communicator.

``mpiexec -n K python scripts/train_better_rnnlm.py ...`` starts K processes
(ranks). :func:`world` gives each one its communicator:

* :class:`SingleProcess` -- no MPI launcher: rank 0 of 1, every collective is
  the identity. Nothing beyond NumPy is imported; a run is exactly as before.
* :class:`MpiCommunicator` -- mpi4py between processes (NumPy arrays).
* :class:`NcclCollectives` -- on CuPy: NCCL between the GPUs for the device
  arrays (gradients, parameters), its unique id broadcast over MPI; MPI for
  the few host values (losses, stop decisions, checkpoint pieces). Each rank
  uses the GPU of its node-local rank.

The collectives a training run needs, all called by every rank in the same
order: :meth:`allreduce_mean_` (one flat array, in place), :meth:`mean` (a
host number), :meth:`bcast` (root's value), :meth:`bcast_arrays` (in place),
:meth:`gather_rows` (row blocks of every rank, joined on the root), and
:meth:`rows` (the contiguous block of a batch's rows this rank owns).

Faults end the whole job, never hang it (see docs/distributed.md):

* a rank that raises prints ``error: rank R: ...`` on one line and calls
  MPI_Abort (:meth:`MpiCommunicator.crash`), which makes mpiexec stop all;
* bad input that every rank sees alike is printed once, by rank 0, and all
  ranks exit with status 2 (:meth:`MpiCommunicator.exit_together`);
* a collective that waits longer than ``DLFS_MPI_TIMEOUT`` seconds (default
  300) means a peer hangs: the waiting rank prints one line and aborts;
* a rank killed by a signal is seen by mpiexec (MPICH's Hydra), which kills
  the others at once and names the PID; rank 0's start line maps PIDs to ranks,
  and a script started with ``--processes K`` says it in one line
  (:mod:`common.parallel.launch`).

Like :mod:`common.run.cli`, this module does not import ``common.np`` at import
time: the GPU of a rank is chosen before the backend is.
"""
import contextlib
import os
import socket
import sys
import threading
import time

from common.errors import BackendError, ConfigError

#: Environment variables by which MPI launchers tell a process the job's size and its rank
#: (MPICH/Hydra, Intel MPI and Slurm's PMI; Open MPI; MVAPICH).
SIZE_VARS = ('PMI_SIZE', 'OMPI_COMM_WORLD_SIZE', 'MV2_COMM_WORLD_SIZE')
RANK_VARS = ('PMI_RANK', 'OMPI_COMM_WORLD_RANK', 'MV2_COMM_WORLD_RANK')
MPI_INSTALL_HINT = "pip install mpi4py mpich (or pip install -e '.[mpi]')"
#: The BLAS and OpenMP thread counts; a user who sets one chooses the threads of every rank.
THREAD_VARS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')


def cores():
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        return os.cpu_count() or 1


def share_cores(local_size, environ=os.environ):
    """K ranks on one machine: each gives its BLAS cores // K threads, unless
    the user set the thread count; otherwise K ranks would each start a
    thread per core and wait on one another inside every product. The
    variables are set for the libraries loaded from now on (NumPy is not
    loaded yet when the communicator starts), threadpoolctl (the ``mpi``
    extra) limits those loaded already. Returns the threads of each rank
    (None: unknown)."""
    chosen = [environ[name] for name in THREAD_VARS if name in environ]
    if chosen:
        return int(chosen[0]) if chosen[0].isdigit() else None
    if local_size < 2:
        return None
    limit = max(1, cores() // local_size)
    for name in THREAD_VARS:
        environ[name] = str(limit)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None if 'numpy' in sys.modules else limit
    threadpool_limits(limits=limit)
    return limit


def launched_size(environ=os.environ):
    """The number of processes an MPI launcher started this one with (1: none)."""
    for name in SIZE_VARS:
        if environ.get(name, '').isdigit():
            return max(int(environ[name]), 1)
    return 1


def launched_rank(environ=os.environ):
    for name in RANK_VARS:
        if environ.get(name, '').isdigit():
            return int(environ[name])
    return 0


class SingleProcess:
    """The communicator of a run without MPI: one rank, nothing to exchange."""
    rank, size, local_rank, local_size, is_root = 0, 1, 0, 1, True

    def rows(self, n, flag='--batch-size'):
        """This rank's rows of a batch of ``n``: a slice (all of them here)."""
        return slice(0, n)

    def allreduce_mean_(self, flat):
        return flat

    def mean(self, value):
        return value

    def bcast(self, value):
        return value

    def bcast_arrays(self, arrays):
        pass

    def gather_rows(self, states):
        return states

    def describe(self):
        return 'one process'

    def use_gpu(self):
        pass


_world = None


def world():
    """This process's communicator, made once: :class:`SingleProcess` unless
    an MPI launcher started more than one process."""
    global _world
    if _world is None:
        _world = SingleProcess() if launched_size() == 1 else MpiCommunicator(_import_mpi())
    return _world


def mpi_timeout():
    """``DLFS_MPI_TIMEOUT``: seconds a collective may wait before the job is ended (default 300)."""
    text = os.environ.get('DLFS_MPI_TIMEOUT', '300')
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(f"DLFS_MPI_TIMEOUT={text!r} is not a positive number of seconds: e.g. 300")
    return value


def _import_mpi():
    size = launched_size()
    try:
        from mpi4py import MPI
    except Exception as exc:         # ImportError, or a libmpi that fails to load
        raise BackendError(f"started by an MPI launcher with {size} processes but mpi4py cannot be loaded "
                           f"({type(exc).__name__}: {exc}): {MPI_INSTALL_HINT}") from None
    try:
        MPI.COMM_WORLD.Get_size()
    except Exception as exc:
        raise BackendError(f"mpi4py is installed but MPI does not start ({type(exc).__name__}: {exc}): "
                           f"{MPI_INSTALL_HINT}, and launch with that MPI's mpiexec") from None
    if MPI.COMM_WORLD.Get_size() != size:
        raise BackendError(f"the launcher says {size} processes but MPI sees {MPI.COMM_WORLD.Get_size()}: "
                           f"mpi4py was built for another MPI than this mpiexec; launch with the mpiexec "
                           f"of the MPI mpi4py uses ({MPI_INSTALL_HINT})")
    return MPI


class MpiCommunicator:
    """Ranks of ``MPI.COMM_WORLD``, NumPy arrays exchanged through mpi4py."""

    def __init__(self, MPI):
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        self.threads = share_cores(self.local_size)
        self.exit_comm = self.comm.Dup()     # for exit_together: never mixed with a pending collective
        self.places = self.comm.allgather((os.getpid(), socket.gethostname()))
        self.timeout = mpi_timeout()
        self.waiting_since = self.waiting_for = None
        self.gpus = None                     # NcclCollectives once connect_gpus ran
        threading.Thread(target=self._watchdog, daemon=True).start()

    # -- row blocks --------------------------------------------------------

    def rows(self, n, flag='--batch-size'):
        if n % self.size:
            raise ConfigError(f"{flag} {n} is not divisible by the {self.size} processes (each takes an equal "
                              f"block of rows): use a multiple of {self.size}")
        block = n // self.size
        return slice(self.rank * block, (self.rank + 1) * block)

    # -- collectives -------------------------------------------------------

    def allreduce_mean_(self, flat):
        """Average ``flat`` (one contiguous array) over the ranks, in place."""
        if self.gpus is not None:
            return self.gpus.allreduce_mean_(flat)
        with self.waiting('the gradient all-reduce'):
            self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        flat *= 1.0 / self.size
        return flat

    def mean(self, value):
        """The mean over the ranks of a host number."""
        with self.waiting('an all-reduce of the loss'):
            return self.comm.allreduce(float(value), op=self.MPI.SUM) / self.size

    def bcast(self, value):
        """Rank 0's ``value`` (any picklable object), on every rank."""
        with self.waiting('a broadcast from rank 0'):
            return self.comm.bcast(value, root=0)

    def bcast_arrays(self, arrays):
        """Overwrite ``arrays`` with rank 0's, in place."""
        if self.gpus is not None:
            return self.gpus.bcast_arrays(arrays)
        with self.waiting('the parameter broadcast'):
            for a in arrays:
                self.comm.Bcast(a, root=0)

    def gather_rows(self, states):
        """``states`` ([{name: (rows, ...) host array}], e.g. the hidden states)
        of every rank, joined along the rows in rank order on rank 0; None elsewhere."""
        import numpy
        with self.waiting('a gather to rank 0'):
            parts = self.comm.gather(states, root=0)
        if not self.is_root:
            return None
        return [{k: numpy.concatenate([p[i][k] for p in parts]) for k in layer} for i, layer in enumerate(states)]

    def describe(self):
        ranks = ', '.join(f'{r}: pid {pid} on {host}' for r, (pid, host) in enumerate(self.places))
        threads = '' if self.threads is None else f", {self.threads} BLAS thread{'s' if self.threads > 1 else ''} each"
        return f'{self.size} processes over MPI (rank {ranks}){threads}'

    def use_gpu(self):
        """Choose this rank's GPU by its node-local rank (before CuPy allocates
        anything). In the test mode ``DLFS_SHARE_GPU=1`` ranks may share GPUs."""
        try:
            import cupy
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception:
            return                           # select_backend says what is missing
        if self.local_size > count and not share_gpu():
            raise ConfigError(f"{self.local_size} processes on {socket.gethostname()} but {count} GPU"
                              f"{'s' if count != 1 else ''}: start at most {count} per node (one GPU each), "
                              f"or set DLFS_SHARE_GPU=1 to test on shared GPUs (slow: no NCCL)")
        cupy.cuda.Device(self.local_rank % max(count, 1)).use()

    def connect_gpus(self):
        """On CuPy: NCCL between the ranks' GPUs for the device arrays; rank 0
        makes the unique id and MPI broadcasts it. With ``DLFS_SHARE_GPU=1``
        the device arrays go through host buffers over MPI instead."""
        if share_gpu():
            self.gpus = HostBufferCollectives(self)
            return
        try:
            from cupy.cuda import nccl
        except Exception as exc:
            raise BackendError(f"several processes with --gpu need NCCL, which this CuPy cannot load "
                               f"({type(exc).__name__}: {exc}): pip install nvidia-nccl-cu12 (or a CuPy "
                               f"built with NCCL)") from None
        uid = self.bcast(nccl.get_unique_id() if self.is_root else None)
        with self.waiting('the NCCL start'):
            self.gpus = NcclCollectives(nccl, nccl.NcclCommunicator(self.size, uid, self.rank), self.size)

    # -- faults --------------------------------------------------------------

    @contextlib.contextmanager
    def waiting(self, what):
        """Marks a blocking collective for the watchdog."""
        self.waiting_for, self.waiting_since = what, time.monotonic()
        try:
            yield
        finally:
            self.waiting_since = None

    def _watchdog(self):
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            since = self.waiting_since
            if since is not None and time.monotonic() - since > self.timeout:
                self.crash(f"no answer from the other ranks for {self.timeout:g} s in {self.waiting_for}: "
                           f"a rank hangs or died; stopping the job (DLFS_MPI_TIMEOUT sets the limit)")

    def crash(self, message):
        """One line naming this rank, then MPI_Abort: mpiexec ends every rank."""
        try:
            sys.stdout.flush()
            print(f'error: rank {self.rank}: {message}', file=sys.stderr, flush=True)
            time.sleep(0.5)     # mpiexec forwards output asynchronously and drops what is in flight at an abort
        finally:
            self.comm.Abort(1)

    def exit_together(self, message, status, wait_s=5.0):
        """End on an error: when every rank reaches this within ``wait_s`` (bad
        input: all see it alike) rank 0 prints ``message`` and ``status`` is
        returned; a rank that comes alone prints it with its rank and aborts."""
        barrier = self.exit_comm.Ibarrier()
        deadline = time.monotonic() + wait_s
        while not barrier.Test():
            if time.monotonic() > deadline:
                self.crash(message.removeprefix('error: '))
            time.sleep(0.005)
        if self.is_root and message:
            print(message, file=sys.stderr, flush=True)
        return status


def share_gpu(environ=os.environ):
    """``DLFS_SHARE_GPU=1``: a test mode in which several ranks may use one
    GPU and reduce through host memory over MPI, since NCCL needs a GPU per
    rank. It shows on one GPU that K ranks compute what one does; it is not
    a way to train fast."""
    return environ.get('DLFS_SHARE_GPU', '') == '1'


class HostBufferCollectives:
    """The device-array collectives through host copies and MPI (the test
    mode of :func:`share_gpu`): each call copies the array to the host and back."""

    def __init__(self, mpi):
        self.mpi = mpi

    def allreduce_mean_(self, flat):
        import cupy
        host = cupy.asnumpy(flat)
        with self.mpi.waiting('the gradient all-reduce'):
            self.mpi.comm.Allreduce(self.mpi.MPI.IN_PLACE, host, op=self.mpi.MPI.SUM)
        flat[...] = cupy.asarray(host)
        flat *= 1.0 / self.mpi.size
        return flat

    def bcast_arrays(self, arrays):
        import cupy
        for a in arrays:
            host = cupy.asnumpy(a)
            with self.mpi.waiting('the parameter broadcast'):
                self.mpi.comm.Bcast(host, root=0)
            a[...] = cupy.asarray(host)


class NcclCollectives:
    """NCCL between GPUs: the device-array collectives of a CuPy run, queued
    on the current stream (no wait for the device)."""

    def __init__(self, nccl, comm, size):
        self.nccl, self.comm, self.size = nccl, comm, size

    @staticmethod
    def pointer(a):
        return a.data.ptr

    def dtype(self, a):
        kinds = {'float32': self.nccl.NCCL_FLOAT32, 'float64': self.nccl.NCCL_FLOAT64,
                 'float16': self.nccl.NCCL_FLOAT16}
        return kinds[str(a.dtype)]

    def stream(self):
        import cupy
        return cupy.cuda.get_current_stream().ptr

    def allreduce_mean_(self, flat):
        ptr = self.pointer(flat)
        self.comm.allReduce(ptr, ptr, flat.size, self.dtype(flat), self.nccl.NCCL_SUM, self.stream())
        flat *= 1.0 / self.size
        return flat

    def bcast_arrays(self, arrays):
        for a in arrays:
            self.comm.bcast(self.pointer(a), a.size, self.dtype(a), 0, self.stream())

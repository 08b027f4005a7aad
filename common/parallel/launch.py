"""``--processes K``: a training script starts its own K ranks under mpiexec.

``python scripts/train_better_rnnlm.py --processes 2`` runs
``mpiexec -n 2 python scripts/train_better_rnnlm.py --processes 2`` as a child
and passes its output through, with two things added:

* each rank gets ``cores // K`` BLAS threads (``OMP_NUM_THREADS`` and the
  like, unless set already), so that K ranks do not run K times the threads
  the machine has;
* when a rank dies without a word (SIGKILL, the out-of-memory killer, a
  crash), MPICH's mpiexec prints a banner of a dozen lines naming a PID. It
  is replaced by one line that names the rank and says how to go on::

      error: rank 1 (pid 794) was killed (signal 9) and the job stopped: resume from the last
      checkpoint with --resume runs/better_rnnlm/checkpoint.npz

Started as ``mpiexec -n K`` directly, the script runs as before (the banner is
then mpiexec's). Nothing here imports MPI or the backend.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

from common.errors import ConfigError
from common.parallel.communicator import MPI_INSTALL_HINT, THREAD_VARS, cores

#: The lines of MPICH's (Hydra's) report of a rank that ended badly.
BANNER = re.compile(r'^(=+|=   .*|YOUR APPLICATION TERMINATED WITH THE EXIT STRING: .*|This typically refers to a '
                    r'problem with your application\.|Please see the FAQ page for debugging suggestions)\s*$')
RANKS = re.compile(r'(\d+): pid (\d+) on ')


def child_env(processes, environ=os.environ):
    """The ranks' environment: ``cores // processes`` threads each, unless the user chose."""
    env = dict(environ)
    per_rank = str(max(1, cores() // processes))
    for name in THREAD_VARS:
        env.setdefault(name, per_rank)
    return env


class Relay:
    """Passes one stream of mpiexec through, holding back MPICH's banner and
    keeping what it says: the PID that died and how (``died``), and the
    PIDs of the ranks from rank 0's ``data-parallel:`` line (``pids``)."""

    def __init__(self, source, sink, report):
        self.source, self.sink, self.report = source, sink, report
        self.blank = False          # an empty line held back: the banner starts with one

    def run(self):
        pending = ''
        for chunk in iter(lambda: os.read(self.source.fileno(), 65536), b''):
            pending += chunk.decode('utf-8', 'replace')
            *lines, pending = pending.split('\n')
            for line in lines:
                self.line(line)
            if '\r' in pending:     # a progress bar redrawing its line: no banner has one
                self.write(('\n' if self.blank else '') + pending)
                pending, self.blank = '', False
        if pending:
            self.line(pending, newline=False)

    def line(self, text, newline=True):
        if BANNER.match(text):
            self.blank = False
            self.report.banner(text)
            return
        if text.strip() == '' and newline:
            if self.blank:
                self.write('\n')
            self.blank = True
            return
        self.report.seen(text)
        self.write(('\n' if self.blank else '') + text + ('\n' if newline else ''))
        self.blank = False

    def write(self, text):
        self.sink.write(text)
        self.sink.flush()


class Report:
    """What the relays learned about the ranks and how the job ended."""

    def __init__(self):
        self.pids, self.pid, self.how, self.said = {}, None, None, False
        self.lock = threading.Lock()

    def seen(self, text):
        with self.lock:
            if text.startswith('error: '):
                self.said = True              # a rank explained itself already
            if text.startswith('data-parallel: '):
                self.pids = {int(pid): int(rank) for rank, pid in RANKS.findall(text)}

    def banner(self, text):
        with self.lock:
            found = re.search(r'PID (\d+) RUNNING AT', text)
            if found and self.pid is None:
                self.pid = int(found.group(1))
            found = re.search(r'EXIT STRING: (.*?)\s*$', text)
            if found:
                self.how = found.group(1)

    def line(self, checkpoint_path):
        """The one line for a rank that died without a word (None: nothing to say)."""
        if self.pid is None or self.said:
            return None
        rank = self.pids.get(self.pid)
        who = f'rank {rank} (pid {self.pid})' if rank is not None else f'a process (pid {self.pid})'
        how = self.how or 'ended'
        signal_no = re.search(r'signal (\d+)', how)
        how = f'was killed (signal {signal_no.group(1)})' if signal_no else f'ended ({how})'
        if checkpoint_path and os.path.exists(checkpoint_path):
            todo = f'resume from the last checkpoint with --resume {checkpoint_path}'
        else:
            todo = 'no checkpoint was written yet: start the run again'
        return f'error: {who} {how} and the job stopped: {todo}'


def relaunch(processes, argv, checkpoint_path, script=None):
    """Run ``script argv`` as ``mpiexec -n processes``; return its exit status."""
    mpiexec = shutil.which('mpiexec')
    if mpiexec is None:
        raise ConfigError(f'--processes {processes} starts the ranks with mpiexec, which is not installed: '
                          f'{MPI_INSTALL_HINT}')
    script = script or os.path.abspath(sys.argv[0])
    cmd = [mpiexec, '-n', str(processes), sys.executable, script, *argv]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(processes))
    previous = signal.signal(signal.SIGINT, lambda *_: None)   # Ctrl-C reaches the ranks; they save and stop
    report = Report()
    relays = [threading.Thread(target=Relay(pipe, sink, report).run)
              for pipe, sink in ((job.stdout, sys.stdout), (job.stderr, sys.stderr))]
    try:
        for r in relays:
            r.start()
        for r in relays:
            r.join()
        status = job.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    message = report.line(checkpoint_path)
    if message:
        print(message, file=sys.stderr, flush=True)
    return status if status else (1 if message else 0)


def start_ranks(args, argv, checkpoint_path):
    """What ``--processes`` asks of a script: None to go on in this process
    (one process, or already one of the ranks), else the exit status of the
    ranks it started (``--processes`` is never taken from a checkpoint: a
    run resumes on any number of processes)."""
    from common.parallel.communicator import launched_size
    wanted, running = getattr(args, 'processes', 1) or 1, launched_size()
    if running > 1:
        if wanted not in (1, running):
            raise ConfigError(f'--processes {wanted} but mpiexec started {running} processes: give one of the two')
        return None
    if wanted == 1:
        return None
    return relaunch(wanted, sys.argv[1:] if argv is None else list(argv), checkpoint_path)

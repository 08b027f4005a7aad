"""What the scripts share: the machine they ran on, their subprocesses, the
logs of runs, and the PyTorch twins of our models that the benchmarks time.

A script runs as ``python scripts/NAME.py``, so scripts/ is on its path and
``import support`` finds this module. Nothing here imports ``common.np`` or
torch at import time: a script chooses its backend after parsing its flags,
and PyTorch is optional.
"""
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the machine ------------------------------------------------------------------------

def cpu_name():
    """The CPU's model name (/proc/cpuinfo, else lscpu, else what platform knows)."""
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        return next(line.split(':', 1)[1].strip() for line in out.splitlines() if line.startswith('Model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or 'unknown CPU'


def blas():
    """NumPy's BLAS: library, version, kernel and threads from threadpoolctl
    when it is installed, else the library NumPy was built against; None
    when neither says."""
    import numpy        # loads the BLAS that threadpoolctl then finds
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        libs = [i for i in threadpool_info() if i.get('user_api') == 'blas']
        if libs:
            i = libs[0]
            return (f"{i.get('internal_api')} {i.get('version')}, {i.get('architecture') or 'kernel unknown'} kernel, "
                    f"{i.get('num_threads')} threads")
    try:
        dep = numpy.show_config(mode='dicts')['Build Dependencies']['blas']
        return f"{dep['name']} {dep.get('version', '')}".strip()
    except Exception:     # an older NumPy without mode='dicts', or another layout
        return None


def versions(torch=False):
    """Python's and NumPy's versions, and PyTorch's (None: not installed) when ``torch``."""
    import numpy
    out = {'python': platform.python_version(), 'numpy': numpy.__version__}
    if torch:
        try:
            import torch as t
            out['torch'] = t.__version__
        except ImportError:
            out['torch'] = None
    return out


def machine(torch=False):
    """The machine as a dict: cpu, cores, arch, system, blas, then :func:`versions`."""
    return {'cpu': cpu_name(), 'cores': os.cpu_count(), 'arch': platform.machine(), 'system': platform.system(),
            'blas': blas(), **versions(torch)}


def describe(info=None):
    """One line: 'CPU, N cores, arch, system, BLAS ...'."""
    info = info or machine()
    line = f"{info['cpu']}, {info['cores']} cores, {info['arch']}, {info['system']}"
    return line + (f", BLAS {info['blas']}" if info.get('blas') else '')


def loadavg():
    """The 1, 5 and 15 minute load averages, or None where the system has none."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def commit():
    """The commit measured, with '+changes' when the working tree differs from it."""
    try:
        head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ('+changes' if dirty else '')
    except (OSError, subprocess.CalledProcessError):
        return None


# -- subprocesses and runs ------------------------------------------------------------------

def python_path():
    """PYTHONPATH for the subprocesses: this checkout first, then what was set."""
    return os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH')) if p)


def child_env(**extra):
    """This process's environment for a child script, with :func:`python_path`."""
    return dict(os.environ, PYTHONPATH=python_path(), **extra)


def last_line(r):
    """The last line a finished subprocess wrote (stderr first), for a one-line report."""
    lines = (r.stderr or r.stdout or '').strip().splitlines()
    return lines[-1] if lines else f'exit {r.returncode}'


def last_json(stdout):
    """The JSON object on the last line of a subprocess's output."""
    return json.loads(stdout.strip().splitlines()[-1])


def read_log(run_dir):
    """The records of ``run_dir``/log.jsonl (as the training scripts write it); [] without one."""
    from common.run.runlog import JsonLog
    path = os.path.join(run_dir, 'log.jsonl')
    return JsonLog.read(path) if os.path.exists(path) else []


def script_command(name, argv=None):
    """'python scripts/NAME.py ARGS' as the user typed it, for a report."""
    return f'python scripts/{name} ' + ' '.join(sys.argv[1:] if argv is None else argv)


# -- PyTorch twins ------------------------------------------------------------------------------

def torch_available(gpu=False):
    """The torch module, or None when it is not installed (or, with ``gpu``, has no CUDA)."""
    try:
        import torch
    except ImportError:
        return None
    if gpu and not torch.cuda.is_available():
        return None
    return torch


def torch_rnnlm(vocab, wordvec, hidden, layers=1, dropout=0.0, tie=False, stacked=True):
    """PyTorch's twin of our Rnnlm with GRU cells: Embedding → Dropout → GRU
    layers, Dropout after each → Linear (tied to the embedding with ``tie``).

    ``stacked``: one multi-layer ``nn.GRU`` (its state one tensor), else one
    ``nn.GRU`` per layer in a ModuleList (its state a list), the same
    function. ``forward(xs, state)`` returns ``(scores, state)``; a state of
    None is zeros; ``model.detach(state)`` cuts it from the graph."""
    from torch import nn

    class TorchRnnlm(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, wordvec)
            self.drop = nn.Dropout(dropout)
            if stacked:
                self.gru = nn.GRU(wordvec, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
            else:
                self.grus = nn.ModuleList([nn.GRU(wordvec if i == 0 else hidden, hidden, batch_first=True)
                                           for i in range(layers)])
            self.out = nn.Linear(hidden, vocab)
            if tie:
                self.out.weight = self.embed.weight

        def forward(self, xs, state=None):
            h = self.drop(self.embed(xs))
            if stacked:
                h, state = self.gru(h, state)
                return self.out(self.drop(h)), state
            new = []
            for gru, s in zip(self.grus, state or [None] * len(self.grus)):
                h, s = gru(h, s)
                h = self.drop(h)
                new.append(s)
            return self.out(h), new

        @staticmethod
        def detach(state):
            if state is None:
                return None
            return state.detach() if stacked else [s.detach() for s in state]

    return TorchRnnlm()


def window_indices(torch, size, batch, jump, start, time_size, device='cpu'):
    """The book's batching (common.trainer's window_indices): row i reads
    ``time_size`` ids from i · jump + start on, wrapping around ``size``."""
    rows = torch.arange(batch, device=device)[:, None] * jump
    return (rows + start + torch.arange(time_size, device=device)[None, :]) % size


def torch_train_step(model, optimizer, xs, ts, idx, state, max_grad=None):
    """One truncated-BPTT iteration on the windows ``idx``: forward from the
    detached ``state``, cross-entropy, backward, clipping (``max_grad``), update.
    Returns ``(loss tensor, state)``."""
    import torch
    scores, state = model(xs[idx], model.detach(state))
    loss = torch.nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]), ts[idx].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    if max_grad is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad)
    optimizer.step()
    return loss, state


def torch_eval_loss(model, corpus, batch, time_size, iters=None, device='cpu'):
    """As common.util.eval_perplexity: rows at i · ((n − 1) // batch), the
    state carried, dropout off, no gradients. The mean loss (nats per token)
    of ``iters`` windows (default: all that fit)."""
    import torch
    n = len(corpus)
    jump = (n - 1) // batch
    iters = iters or jump // time_size
    model.eval()
    total, state = torch.zeros((), dtype=torch.float64, device=device), None
    with torch.no_grad():
        for i in range(iters):
            idx = window_indices(torch, n, batch, jump, i * time_size, time_size, device)
            scores, state = model(corpus[idx], state)
            loss = torch.nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]),
                                                     corpus[(idx + 1) % n].reshape(-1))
            total += loss.double()
    model.train()
    return float(total) / iters

"""Benchmark: this framework against PyTorch on the same models, side by side.

    python scripts/bench.py                  # CPU: book-size BetterRnnlm, eval, char model, memory
    python scripts/bench.py --gpu            # the same on CuPy (and PyTorch on CUDA when it has it)
    python scripts/bench.py --only train --blocks 7 --json runs/bench.json

What is timed
- train: one full training iteration of the book-size BetterRnnlm (N=20, T=35,
  V=10,000, D=H=650: batching, forward, backward, clipping, SGD update)
  through the real RnnlmTrainer, against the equivalent PyTorch model
  (embedding, two nn.GRU layers, dropout 0.5, tied output, SGD,
  clip_grad_norm_) with the same batching.
- eval: eval_perplexity tokens/s (batch 10, time 35), against PyTorch under
  no_grad in eval mode; and eval speed per token relative to training.
- char: training tokens/s of a character-level GRU model, both frameworks.
- memory: peak resident memory of a training run of each, each in a fresh
  subprocess that imports only its own framework.

Timing alternates between the two frameworks block by block (a pause between
blocks lets idle BLAS/OpenMP threads go to sleep), warm-up blocks first; each
figure is the median over blocks of the mean time per iteration in a block.
Ratios are ours / PyTorch (below 1 means we are faster).
"""
import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import support
from common.run.cli import ArgumentParser

BOOK = dict(vocab=10000, wordvec=650, hidden=650, batch=20, time=35, dropout=0.5, lr=10.0, max_grad=0.25,
            eval_batch=10)
CHAR = dict(vocab=65, wordvec=256, hidden=256, layers=2, batch=64, time=100, dropout=0.0, lr=10.0, max_grad=1.0)
#: --tiny: the same code paths at toy sizes, to check that the script works
TINY = dict(BOOK, vocab=50, wordvec=16, hidden=16, batch=4, time=5)


# ---------------------------------------------------------------------- ours

class Ours:
    """Our Rnnlm through RnnlmTrainer. On CuPy ``cuda_graph`` chooses the
    graph path (``ours``, the default) or every launch from Python
    (``ours_eager``)."""

    def __init__(self, cfg, iters, layers=2, tie=True, cuda_graph=True):
        import numpy
        from common import backend
        from common.optimizer import SGD
        from common.trainer import RnnlmTrainer
        from ch_gru.rnnlm import Rnnlm
        from common.util import eval_perplexity
        self.backend, self.eval_perplexity = backend, eval_perplexity
        backend.seed(0)
        self.cfg, self.iters = cfg, iters
        self.model = Rnnlm(cfg['vocab'], cfg['wordvec'], cfg['hidden'], num_layers=layers,
                           dropout_ratio=cfg['dropout'], cell='gru', tie_weights=tie)
        self.trainer = RnnlmTrainer(self.model, SGD(cfg['lr']), cuda_graph=cuda_graph)
        self.cuda_graph = cuda_graph
        self.name = 'ours' if cuda_graph or not backend.GPU else 'ours_eager'
        rng = numpy.random.default_rng(0)
        self.corpus = rng.integers(0, cfg['vocab'], cfg['batch'] * cfg['time'] * iters + 1).astype(numpy.int32)
        n_eval = cfg.get('eval_batch', 10) * cfg['time'] * iters + 1
        self.eval_corpus = rng.integers(0, cfg['vocab'], n_eval).astype(numpy.int32)

    @contextlib.contextmanager
    def _path(self):
        """The eager runner's blocks: no graphs, and cupy.matmul's products
        (the graph runner's GEMM is global once installed)."""
        b = self.backend
        kept = b.config.CUDA_GRAPH, b._gemm
        if not self.cuda_graph:
            b.config.CUDA_GRAPH = False
            b.use_gemm(None)
        try:
            yield
        finally:
            b.config.CUDA_GRAPH = kept[0]
            b.use_gemm(kept[1])

    def train_block(self):
        """``iters`` training iterations through RnnlmTrainer.fit; seconds."""
        c = self.cfg
        with self._path():
            t = time.perf_counter()
            self.trainer.fit(self.corpus[:-1], self.corpus[1:], max_epoch=1, batch_size=c['batch'],
                             time_size=c['time'], max_grad=c['max_grad'], eval_interval=0)
            self.backend.synchronize()
            return time.perf_counter() - t

    def eval_block(self):
        """eval_perplexity over ``iters`` batches of 10 x time; seconds."""
        with self._path():
            t = time.perf_counter()
            self.model.reset_state()
            self.eval_perplexity(self.model, self.eval_corpus, batch_size=self.cfg['eval_batch'],
                                 time_size=self.cfg['time'])
            self.backend.synchronize()
            return time.perf_counter() - t


# ------------------------------------------------------------------- PyTorch

class Torch:
    """PyTorch's twin. On CUDA ``tf32`` sets cuDNN's and cuBLAS's TF32 switches
    for its blocks: PyTorch's default (cuDNN on, cuBLAS off) is ``pytorch``,
    both off (full float32, as ours) is ``pytorch_fp32``."""

    def __init__(self, cfg, iters, layers=2, tie=True, device='cpu', tf32=None):
        import torch
        torch.manual_seed(0)
        self.tf32 = tf32
        self.name = 'pytorch_fp32' if tf32 is False else 'pytorch'
        self.torch, self.cfg, self.iters, self.device = torch, cfg, iters, device
        V = cfg['vocab']
        self.model = support.torch_rnnlm(V, cfg['wordvec'], cfg['hidden'], layers, cfg['dropout'], tie,
                                         stacked=False).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg['lr'])
        gen = torch.Generator().manual_seed(0)
        n = cfg['batch'] * cfg['time'] * iters + 1
        self.corpus = torch.randint(0, V, (n,), generator=gen).to(device)
        n_eval = cfg.get('eval_batch', 10) * cfg['time'] * iters + 1
        self.eval_corpus = torch.randint(0, V, (n_eval,), generator=gen).to(device)

    def _sync(self):
        if self.device != 'cpu':
            self.torch.cuda.synchronize()

    def _precision(self):
        if self.device != 'cpu':
            backends = self.torch.backends
            backends.cudnn.allow_tf32 = self.tf32 is not False
            backends.cuda.matmul.allow_tf32 = bool(self.tf32)

    def train_block(self):
        """The same iterations and batching as RnnlmTrainer (rows at offsets
        i * len // batch, advancing together), detaching the carried state."""
        c = self.cfg
        xs, ts = self.corpus[:-1], self.corpus[1:]
        size, state = len(xs), None
        self.model.train()
        self._precision()
        t = time.perf_counter()
        for it in range(self.iters):
            idx = support.window_indices(self.torch, size, c['batch'], size // c['batch'], it * c['time'],
                                         c['time'], self.device)
            _, state = support.torch_train_step(self.model, self.opt, xs, ts, idx, state, c['max_grad'])
        self._sync()
        return time.perf_counter() - t

    def eval_block(self):
        self._precision()
        t = time.perf_counter()
        support.torch_eval_loss(self.model, self.eval_corpus, self.cfg['eval_batch'], self.cfg['time'], self.iters,
                                self.device)
        self._sync()
        return time.perf_counter() - t


# ------------------------------------------------------------------- driver

def alternate(runners, method, blocks, warmup, pause):
    """Median over blocks of the mean seconds per iteration, runners alternating."""
    times = {r.name: [] for r in runners}
    for b in range(warmup + blocks):
        for r in runners:
            time.sleep(pause)
            dt = getattr(r, method)() / r.iters
            if b >= warmup:
                times[r.name].append(dt)
    return {name: statistics.median(ts) for name, ts in times.items()}, times


def peak_rss_mb():
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is not
    inherited from the parent across exec)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_worker(which, iters, gpu):
    """Run in a fresh process: a short training run, then report peak RSS."""
    if which == 'ours':
        import common.np  # noqa: F401
    else:
        import torch  # noqa: F401
    base = peak_rss_mb()
    runner = (Ours if which == 'ours' else Torch)(BOOK, iters, **({'device': 'cuda'} if gpu and which != 'ours' else {}))
    runner.train_block()
    runner.train_block()
    result = {'peak_rss_mb': peak_rss_mb(), 'after_imports_mb': base}
    if gpu:   # device memory: CuPy's pool holds what it ever needed; PyTorch tracks its peak
        if which == 'ours':
            result['device_pool_mb'] = runner.backend.np.get_default_memory_pool().total_bytes() / 2**20
        else:
            result['device_peak_mb'] = runner.torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def measure_memory(which, iters, gpu):
    cmd = [sys.executable, os.path.abspath(__file__), '--memory-worker', which, '--iters', str(iters)]
    if gpu:
        cmd.append('--gpu')
    if BOOK['vocab'] == TINY['vocab']:
        cmd.append('--tiny')
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f'memory worker {which} failed: {r.stderr.strip().splitlines()[-1:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--gpu', action='store_true', help='run ours on CuPy and PyTorch on CUDA')
    p.add_argument('--only', default='train,eval,char,memory',
                   help='comma-separated subset of train, eval, char, memory')
    p.add_argument('--iters', type=int, default=5, help='iterations per timed block')
    p.add_argument('--blocks', type=int, default=5, help='timed blocks per framework (median reported)')
    p.add_argument('--warmup', type=int, default=1, help='untimed blocks first')
    p.add_argument('--pause', type=float, default=0.3, help='seconds between blocks (lets idle threads sleep)')
    p.add_argument('--no-torch', action='store_true', help='time ours only')
    p.add_argument('--json', default=os.path.join('runs', 'bench.json'), help='write results here')
    p.add_argument('--eval-batch-size', type=int, default=10,
                   help="rows of eval_perplexity's batches (10 is the book's default)")
    p.add_argument('--tiny', action='store_true', help='toy sizes: check that everything runs, no real figures')
    p.add_argument('--memory-worker', choices=['ours', 'pytorch'], help=argparse.SUPPRESS)
    return p


class Bench:
    """The sections of one benchmark run; each adds its figures to ``result``."""

    def __init__(self, args, torch, result):
        self.args, self.torch, self.result = args, torch, result
        self.device = 'cuda' if args.gpu else 'cpu'

    def runners(self, cfg, **kw):
        """Ours (on CuPy also ours_eager, without CUDA graphs) and PyTorch (on
        CUDA also pytorch_fp32, without TF32)."""
        rs = [Ours(cfg, self.args.iters, **kw)]
        if self.args.gpu:
            rs.append(Ours(cfg, self.args.iters, cuda_graph=False, **kw))
        if self.torch is not None:
            rs.append(Torch(cfg, self.args.iters, device=self.device, **kw))
            if self.args.gpu:
                rs.append(Torch(cfg, self.args.iters, device=self.device, tf32=False, **kw))
        return rs

    def timed(self, label, runners, method, unit_tokens):
        """Median seconds per iteration of each runner, printed as one line."""
        a = self.args
        med, raw = alternate(runners, method, a.blocks, a.warmup, a.pause)
        line = f'{label:<34}' + ' | '.join(f'{n} {1e3 * s:8.1f} ms/it {unit_tokens / s:9.0f} tok/s'
                                         for n, s in med.items())
        for peer in ('pytorch', 'pytorch_fp32'):
            if peer in med:
                line += f" | ratio ours/{peer} {med['ours'] / med[peer]:.3f}"
        print(line, flush=True)
        return {'median_s': med, 'blocks_s': raw}

    def train(self, runners):
        self.result['train'] = out = self.timed('train iteration (book size)', runners, 'train_block',
                                                BOOK['batch'] * BOOK['time'])
        if 'pytorch' in out['median_s']:
            out['ratio'] = out['median_s']['ours'] / out['median_s']['pytorch']

    def eval(self, runners):
        self.result['eval'] = out = self.timed(f"eval_perplexity (batch {BOOK['eval_batch']})", runners,
                                               'eval_block', BOOK['eval_batch'] * BOOK['time'])
        if 'train' in self.result:
            per_tok_train = self.result['train']['median_s']['ours'] / (BOOK['batch'] * BOOK['time'])
            per_tok_eval = out['median_s']['ours'] / (BOOK['eval_batch'] * BOOK['time'])
            out['speedup_per_token_vs_train'] = per_tok_train / per_tok_eval
            print(f"{'':<34}eval is {per_tok_train / per_tok_eval:.2f}x faster per token than training")

    def char(self):
        out = self.timed(f"char GRU train ({CHAR['layers']}x{CHAR['hidden']}, V={CHAR['vocab']})",
                         self.runners(CHAR, layers=CHAR['layers'], tie=True), 'train_block',
                         CHAR['batch'] * CHAR['time'])
        self.result['char'] = {'config': CHAR, **out}

    def memory(self):
        a = self.args
        mem = {'ours': measure_memory('ours', a.iters, a.gpu)}
        if self.torch is not None:
            mem['pytorch'] = measure_memory('pytorch', a.iters, a.gpu)
        for name, m in mem.items():
            device = ''.join(f', {k} {v:.0f} MB' for k, v in m.items() if k.startswith('device'))
            print(f"peak RSS {name:<8} {m['peak_rss_mb']:7.0f} MB (after imports {m['after_imports_mb']:.0f} MB{device})")
        self.result['memory'] = mem


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.tiny:
        BOOK.update(TINY)
        CHAR.update(vocab=20, wordvec=8, hidden=8, batch=4, time=6)
    BOOK['eval_batch'] = args.eval_batch_size

    from common.run.cli import select_backend
    if args.memory_worker:
        if args.memory_worker == 'ours':
            select_backend(args.gpu)
        return memory_worker(args.memory_worker, args.iters, args.gpu)
    backend = select_backend(args.gpu)
    torch = None if args.no_torch else support.torch_available(args.gpu)
    if torch is not None and not args.gpu:
        torch.set_num_threads(os.cpu_count() or 1)
    parts = set(args.only.split(','))
    machine = support.describe()
    result = {'machine': machine, 'backend': 'cupy' if backend.GPU else 'numpy', 'command': ' '.join(sys.argv),
              'torch': None if torch is None else torch.__version__, 'config': BOOK}
    print(f"machine: {machine}; ours on {result['backend']}; PyTorch {result['torch'] or 'not installed'}")
    bench = Bench(args, torch, result)
    book_runners = bench.runners(BOOK) if parts & {'train', 'eval'} else []
    if 'train' in parts:
        bench.train(book_runners)
    if 'eval' in parts:
        bench.eval(book_runners)
    del book_runners
    if 'char' in parts:
        bench.char()
    if 'memory' in parts:
        bench.memory()
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

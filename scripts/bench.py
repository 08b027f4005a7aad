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
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

BOOK = dict(vocab=10000, wordvec=650, hidden=650, batch=20, time=35, dropout=0.5, lr=10.0, max_grad=0.25,
            eval_batch=10)
CHAR = dict(vocab=65, wordvec=256, hidden=256, layers=2, batch=64, time=100, dropout=0.0, lr=10.0, max_grad=1.0)
#: --tiny: the same code paths at toy sizes, to check that the script works
TINY = dict(BOOK, vocab=50, wordvec=16, hidden=16, batch=4, time=5)


# ---------------------------------------------------------------------- ours

class Ours:
    name = 'ours'

    def __init__(self, cfg, iters, layers=2, tie=True):
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
        self.trainer = RnnlmTrainer(self.model, SGD(cfg['lr']))
        rng = numpy.random.default_rng(0)
        self.corpus = rng.integers(0, cfg['vocab'], cfg['batch'] * cfg['time'] * iters + 1).astype(numpy.int32)
        n_eval = cfg.get('eval_batch', 10) * cfg['time'] * iters + 1
        self.eval_corpus = rng.integers(0, cfg['vocab'], n_eval).astype(numpy.int32)

    def train_block(self):
        """``iters`` training iterations through RnnlmTrainer.fit; seconds."""
        c = self.cfg
        t = time.perf_counter()
        self.trainer.fit(self.corpus[:-1], self.corpus[1:], max_epoch=1, batch_size=c['batch'],
                         time_size=c['time'], max_grad=c['max_grad'], eval_interval=0)
        self.backend.synchronize()
        return time.perf_counter() - t

    def eval_block(self):
        """eval_perplexity over ``iters`` batches of 10 x time; seconds."""
        t = time.perf_counter()
        self.model.reset_state()
        self.eval_perplexity(self.model, self.eval_corpus, batch_size=self.cfg['eval_batch'],
                             time_size=self.cfg['time'])
        self.backend.synchronize()
        return time.perf_counter() - t


# ------------------------------------------------------------------- PyTorch

class Torch:
    name = 'pytorch'

    def __init__(self, cfg, iters, layers=2, tie=True, device='cpu'):
        import torch
        import torch.nn as nn
        torch.manual_seed(0)
        self.torch, self.cfg, self.iters, self.device = torch, cfg, iters, device
        V, D, H = cfg['vocab'], cfg['wordvec'], cfg['hidden']

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(V, D)
                self.drop = nn.Dropout(cfg['dropout'])
                self.grus = nn.ModuleList([nn.GRU(D if i == 0 else H, H, batch_first=True)
                                           for i in range(layers)])
                self.out = nn.Linear(H, V)
                if tie:
                    self.out.weight = self.embed.weight

            def forward(self, x, states):
                h = self.drop(self.embed(x))
                new = []
                for gru, s in zip(self.grus, states):
                    h, s = gru(h, s)
                    h = self.drop(h)
                    new.append(s)
                return self.out(h), new

        self.model = Model().to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg['lr'])
        self.loss = nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(0)
        n = cfg['batch'] * cfg['time'] * iters + 1
        self.corpus = torch.randint(0, V, (n,), generator=gen).to(device)
        n_eval = cfg.get('eval_batch', 10) * cfg['time'] * iters + 1
        self.eval_corpus = torch.randint(0, V, (n_eval,), generator=gen).to(device)
        self.layers = layers

    def _states(self, n):
        return [self.torch.zeros(1, n, self.cfg['hidden'], device=self.device) for _ in range(self.layers)]

    def _sync(self):
        if self.device != 'cpu':
            self.torch.cuda.synchronize()

    def train_block(self):
        """The same iterations and batching as RnnlmTrainer (rows at offsets
        i * len // batch, advancing together), detaching the carried state."""
        torch, c = self.torch, self.cfg
        xs, ts = self.corpus[:-1], self.corpus[1:]
        size = len(xs)
        offsets = torch.arange(c['batch'], device=self.device) * (size // c['batch'])
        steps = torch.arange(c['time'], device=self.device)
        states = self._states(c['batch'])
        self.model.train()
        t = time.perf_counter()
        for it in range(self.iters):
            idx = (offsets[:, None] + it * c['time'] + steps[None, :]) % size
            states = [s.detach() for s in states]
            out, states = self.model(xs[idx], states)
            loss = self.loss(out.reshape(-1, c['vocab']), ts[idx].reshape(-1))
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c['max_grad'])
            self.opt.step()
        self._sync()
        return time.perf_counter() - t

    def eval_block(self):
        torch, c = self.torch, self.cfg
        corpus = self.eval_corpus
        size = len(corpus)
        rows = c['eval_batch']
        jump = (size - 1) // rows
        offsets = torch.arange(rows, device=self.device) * jump
        steps = torch.arange(c['time'], device=self.device)
        states = self._states(rows)
        self.model.eval()
        t = time.perf_counter()
        with torch.no_grad():
            total = 0
            for it in range(self.iters):
                idx = (offsets[:, None] + it * c['time'] + steps[None, :]) % size
                out, states = self.model(corpus[idx], states)
                total += self.loss(out.reshape(-1, c['vocab']), corpus[(idx + 1) % size].reshape(-1))
            float(total)
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


def torch_available(gpu):
    try:
        import torch
    except ImportError:
        return None
    if gpu and not torch.cuda.is_available():
        return None
    return torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
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
    args = p.parse_args(argv)
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
    torch = None if args.no_torch else torch_available(args.gpu)
    device = 'cuda' if args.gpu else 'cpu'
    if torch is not None and not args.gpu:
        torch.set_num_threads(os.cpu_count() or 1)
    parts = set(args.only.split(','))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}"
    result = {'machine': machine, 'backend': 'cupy' if backend.GPU else 'numpy', 'command': ' '.join(sys.argv),
              'torch': None if torch is None else torch.__version__, 'config': BOOK}
    print(f"machine: {machine}; ours on {result['backend']}; PyTorch {result['torch'] or 'not installed'}")

    def runners(cfg, **kw):
        rs = [Ours(cfg, args.iters, **kw)]
        if torch is not None:
            rs.append(Torch(cfg, args.iters, device=device, **kw))
        return rs

    def report(label, medians, unit_tokens):
        line = f'{label:<34}' + ' | '.join(f'{n} {1e3 * s:8.1f} ms/it {unit_tokens / s:9.0f} tok/s'
                                         for n, s in medians.items())
        if 'pytorch' in medians:
            line += f" | ratio ours/pytorch {medians['ours'] / medians['pytorch']:.3f}"
        print(line, flush=True)

    book_runners = runners(BOOK) if parts & {'train', 'eval'} else []
    if 'train' in parts:
        med, raw = alternate(book_runners, 'train_block', args.blocks, args.warmup, args.pause)
        report('train iteration (book size)', med, BOOK['batch'] * BOOK['time'])
        result['train'] = {'median_s': med, 'blocks_s': raw}
        if 'pytorch' in med:
            result['train']['ratio'] = med['ours'] / med['pytorch']
    if 'eval' in parts:
        med, raw = alternate(book_runners, 'eval_block', args.blocks, args.warmup, args.pause)
        report(f"eval_perplexity (batch {BOOK['eval_batch']})", med, BOOK['eval_batch'] * BOOK['time'])
        result['eval'] = {'median_s': med, 'blocks_s': raw}
        if 'train' in result:
            per_tok_train = result['train']['median_s']['ours'] / (BOOK['batch'] * BOOK['time'])
            per_tok_eval = med['ours'] / (BOOK['eval_batch'] * BOOK['time'])
            result['eval']['speedup_per_token_vs_train'] = per_tok_train / per_tok_eval
            print(f"{'':<34}eval is {per_tok_train / per_tok_eval:.2f}x faster per token than training")
    del book_runners
    if 'char' in parts:
        med, raw = alternate(runners(CHAR, layers=CHAR['layers'], tie=True), 'train_block', args.blocks,
                             args.warmup, args.pause)
        report(f"char GRU train ({CHAR['layers']}x{CHAR['hidden']}, V={CHAR['vocab']})", med,
               CHAR['batch'] * CHAR['time'])
        result['char'] = {'config': CHAR, 'median_s': med, 'blocks_s': raw}
    if 'memory' in parts:
        mem = {'ours': measure_memory('ours', args.iters, args.gpu)}
        if torch is not None:
            mem['pytorch'] = measure_memory('pytorch', args.iters, args.gpu)
        for name, m in mem.items():
            device = ''.join(f', {k} {v:.0f} MB' for k, v in m.items() if k.startswith('device'))
            print(f"peak RSS {name:<8} {m['peak_rss_mb']:7.0f} MB (after imports {m['after_imports_mb']:.0f} MB{device})")
        result['memory'] = mem
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

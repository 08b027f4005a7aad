"""Benchmark: valid loss of a character GRU on Tiny Shakespeare after a fixed training time.

    python scripts/bench_char.py                       # 100 s each for dlfs-gru and PyTorch
    python scripts/bench_char.py --seconds 30 --skip-torch

The target: split 90/10, valid loss <= 1.60 nats/char after at most --seconds
(100) seconds of training wall time on the machine at hand. Training time is
the time spent in training iterations; evaluations are not counted. dlfs-gru
trains through the same code as scripts/train_char_rnnlm.py (Rnnlm, Adam,
RnnlmTrainer, train_with_validation). The same run then trains the equivalent
PyTorch model (nn.Embedding → nn.GRU → nn.Linear; same sizes, Adam with the
same settings, the same truncated-BPTT batches, clipping, evaluation and
learning-rate decay, torch.set_num_threads(--threads)) for the same budget, and
prints both curves and the comparison. PyTorch is optional: without it that
part is skipped. Writes <out>.json (configuration, curves, results, a sample,
the commit) and <out>.png (loss against training time).
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy

from common.run.cli import HelpFormatter, nonnegative_int, optional_positive_float, positive_float, positive_int, \
    ratio, run, select_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 1.60


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    p.add_argument('--seconds', type=positive_float, default=100.0, help='training time budget of each side')
    p.add_argument('--data-dir', help='directory holding Tiny Shakespeare input.txt (default: $DLFS_DATA_DIR, '
                   'then the download cache)')
    p.add_argument('--embed-size', type=positive_int, default=64)
    p.add_argument('--hidden-size', type=positive_int, default=256)
    p.add_argument('--layers', type=positive_int, default=1)
    p.add_argument('--dropout', type=ratio, default=0.0)
    p.add_argument('--tie', action='store_true', help='tie the output weight to the embedding')
    p.add_argument('--lr', type=positive_float, default=0.008, help='Adam learning rate')
    p.add_argument('--lr-decay', type=positive_float, default=2.0,
                   help='divide the learning rate by this after an epoch that did not improve valid loss')
    p.add_argument('--lr-epoch-factor', type=positive_float, default=0.6,
                   help='multiply the learning rate by this after every epoch')
    p.add_argument('--max-grad', type=optional_positive_float, default=5.0, help='gradient norm clipping')
    p.add_argument('--batch-size', type=positive_int, default=64)
    p.add_argument('--time-size', type=positive_int, default=64)
    p.add_argument('--valid-interval', type=positive_int, default=100,
                   help='evaluate on valid every N iterations (not counted as training time)')
    p.add_argument('--eval-batch-size', type=positive_int, default=32)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=positive_int, default=2, help='torch.set_num_threads for PyTorch')
    p.add_argument('--skip-torch', action='store_true', help='run only the dlfs-gru side')
    p.add_argument('--sample', type=nonnegative_int, default=600,
                   help='characters to sample from the trained dlfs-gru model (temperature 0.8)')
    p.add_argument('--out', default=os.path.join('docs', 'char_target'),
                   help='write <out>.json and <out>.png')
    p.add_argument('--run-dir', default=os.path.join('runs', 'bench_char'),
                   help='log.jsonl, plots and the model file of the dlfs-gru run')
    return p


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


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{cpu}, {os.cpu_count()} cores, {platform.system()}'


def cpu_wait_seconds():
    """Seconds during which some task waited for a CPU (Linux pressure stall
    information), or None: other work on the machine shows up here."""
    try:
        with open('/proc/pressure/cpu') as f:
            return int(f.readline().split('total=')[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return None


def measured(side, *args):
    """side(*args) with the wall time and the share of it some task waited for a CPU."""
    wait0, t0 = cpu_wait_seconds(), time.time()
    result = side(*args)
    wait1, wall = cpu_wait_seconds(), time.time() - t0
    result['wall_seconds'] = wall
    result['cpu_wait_share'] = None if wait0 is None or wait1 is None else (wait1 - wait0) / wall
    return result


# -- dlfs-gru -------------------------------------------------------------------

def run_ours(corpus, args):
    from ch_gru.generate import CharCodec, TextGenerator
    from ch_gru.rnnlm import Rnnlm
    from common.run.cli import check_output_dir
    from common.optimizer import Adam
    from common.run.settings import TrainSettings
    from common.run.loop import train_with_validation
    check_output_dir(args.run_dir)
    log_path = os.path.join(args.run_dir, 'log.jsonl')
    if os.path.exists(log_path):
        os.unlink(log_path)
    model = Rnnlm(len(corpus.vocab), args.embed_size, args.hidden_size, num_layers=args.layers,
                  dropout_ratio=args.dropout, tie_weights=args.tie)
    print(f'== dlfs-gru: {model.describe()}, {model.param_count():,} parameters', flush=True)
    settings = TrainSettings(
        max_epoch=10 ** 6, batch_size=args.batch_size, time_size=args.time_size, max_grad=args.max_grad,
        eval_interval=0, out_dir=args.run_dir, lr_decay=args.lr_decay, eval_batch_size=args.eval_batch_size,
        save_path=os.path.join(args.run_dir, 'CharRnnlm.npz'), unit='char', max_seconds=args.seconds,
        valid_interval=args.valid_interval or 0, lr_epoch_factor=args.lr_epoch_factor)
    result = train_with_validation(model, Adam(args.lr), (corpus.train, corpus.valid, None), settings,
                                   vocab=corpus.vocab.tokens, save_meta=corpus.save_meta(),
                                   log_extra={'args': vars(args)})
    sample = None
    if args.sample:
        sample = TextGenerator(model, CharCodec(corpus.vocab)).sample(length=args.sample, temperature=0.8,
                                                                      seed=args.seed)
    points = result['curve']
    return {'params': model.param_count(), 'curve': points, 'train_seconds': result['train_seconds'],
            'iters': points[-1]['iter'], 'final_valid_loss': math.log(points[-1]['valid_ppl']),
            'best_valid_loss': math.log(result['best_valid_ppl']),
            'chars_per_sec': points[-1]['iter'] * args.batch_size * args.time_size / result['train_seconds'],
            'sample': sample}


# -- PyTorch ----------------------------------------------------------------------

def run_torch(corpus, args):
    import torch
    from torch import nn
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    V, D, H = len(corpus.vocab), args.embed_size, args.hidden_size

    class CharGRU(nn.Module):
        """Embedding → Dropout → GRU (layers, dropout between them) → Dropout → Linear."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, D)
            self.gru = nn.GRU(D, H, args.layers, batch_first=True,
                              dropout=args.dropout if args.layers > 1 else 0.0)
            self.drop = nn.Dropout(args.dropout)
            self.out = nn.Linear(H, V)
            if args.tie:
                self.out.weight = self.embed.weight

        def forward(self, xs, h):
            hs, h = self.gru(self.drop(self.embed(xs)), h)
            return self.out(self.drop(hs)), h

    model = CharGRU()
    params = sum(p.numel() for p in model.parameters())
    print(f'== PyTorch {torch.__version__}: nn.GRU model, {params:,} parameters, {args.threads} threads',
          flush=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-7)   # eps as common.optimizer.Adam
    loss_fn = nn.CrossEntropyLoss()
    train = torch.from_numpy(corpus.train.astype(numpy.int64))
    valid = torch.from_numpy(corpus.valid.astype(numpy.int64))
    B, T = args.batch_size, args.time_size

    def windows(size, batch, jump, start):
        """The book's batching: row i reads from i · jump + start, wrapping (as window_indices)."""
        return (torch.arange(batch)[:, None] * jump + start + torch.arange(T)[None, :]) % size

    def evaluate():
        """As common.util.eval_perplexity: rows at i · ((n − 1) // batch), state carried, dropout off."""
        model.eval()
        n, b = len(valid), args.eval_batch_size
        iters, jump = (n - 1) // (b * T), (n - 1) // b
        total, h = 0.0, None
        with torch.no_grad():
            for i in range(iters):
                idx = windows(n, b, jump, i * T)
                scores, h = model(valid[idx], h)
                total += loss_fn(scores.reshape(-1, V), valid[(idx + 1) % n].reshape(-1)).item()
        model.train()
        return math.exp(total / iters)

    xs, ts = train[:-1], train[1:]
    size = len(xs)
    max_iters = size // (B * T)
    points, best, train_seconds, last_step, total_iters = [], math.inf, 0.0, 0.0, 0
    loss_sum, loss_count = 0.0, 0

    def add_point():
        nonlocal loss_sum, loss_count
        point = {'iter': total_iters, 'train_seconds': train_seconds,
                 'train_ppl': math.exp(loss_sum / max(loss_count, 1)), 'valid_ppl': evaluate()}
        loss_sum, loss_count = 0.0, 0
        points.append(point)
        print(f"| torch | iter {total_iters} | train time {train_seconds:.1f}[s] | train loss "
              f"{math.log(point['train_ppl']):.4f} | valid loss {math.log(point['valid_ppl']):.4f} nats/char",
              flush=True)
        return point['valid_ppl']

    stopped = False
    while not stopped:
        h = None
        for it in range(max_iters):
            if train_seconds + last_step > args.seconds:
                stopped = True
                break
            start = time.perf_counter()
            idx = windows(size, B, size // B, it * T)
            scores, h = model(xs[idx], h)
            h = h.detach()                                # truncated BPTT
            loss = loss_fn(scores.reshape(-1, V), ts[idx].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            if args.max_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), args.max_grad)
            optimizer.step()
            loss_sum += loss.item()
            loss_count += 1
            last_step = time.perf_counter() - start
            train_seconds += last_step
            total_iters += 1
            if total_iters % args.valid_interval == 0:
                add_point()
        if not points or points[-1]['iter'] != total_iters:   # the epoch's (or budget's) end
            add_point()
        improved = points[-1]['valid_ppl'] < best
        best = min(best, points[-1]['valid_ppl'])
        for group in optimizer.param_groups:        # as train_with_validation
            group['lr'] *= (1 if improved else 1 / args.lr_decay) * args.lr_epoch_factor
    return {'params': params, 'curve': points, 'train_seconds': train_seconds, 'iters': total_iters,
            'final_valid_loss': math.log(points[-1]['valid_ppl']), 'best_valid_loss': math.log(best),
            'chars_per_sec': total_iters * B * T / train_seconds, 'version': torch.__version__}


# -- report -----------------------------------------------------------------------------

def plot(results, path, seconds):
    from common.run.plotting import line_plot
    series = {}
    for name, r in results.items():
        x = [p['train_seconds'] for p in r['curve']]
        series[f'{name} valid'] = (x, [math.log(p['valid_ppl']) for p in r['curve']])
    for name, r in results.items():
        x = [p['train_seconds'] for p in r['curve']]
        series[f'{name} train'] = (x, [math.log(p['train_ppl']) for p in r['curve']])
    series[f'target {TARGET:.2f}'] = ([0, seconds], [TARGET, TARGET])
    return line_plot(series, 'training time (s)', 'loss (nats/char)', path=path, ylim=(1.2, 3.0),
                     title='Tiny Shakespeare, GRU: loss against training time')


def main(argv=None):
    args = build_parser().parse_args(argv)
    backend = select_backend(False)
    backend.seed(args.seed)
    from dataset import chars
    corpus = chars.load_corpus('shakespeare', (0.9, 0.1, 0.0), data_dir=args.data_dir)
    print(f'data: {corpus.description}: {len(corpus.train)} / {len(corpus.valid)} characters, '
          f'vocabulary {len(corpus.vocab)}; machine: {machine()}', flush=True)
    results = {'dlfs-gru': measured(run_ours, corpus, args)}
    torch_note = None
    if args.skip_torch:
        torch_note = 'skipped (--skip-torch)'
    else:
        try:
            import torch  # noqa: F401
        except ImportError:
            torch_note = 'skipped: PyTorch is not installed'
        else:
            results['PyTorch'] = measured(run_torch, corpus, args)
    if torch_note:
        print(f'== PyTorch {torch_note}')

    ours = results['dlfs-gru']
    met = ours['final_valid_loss'] <= TARGET and ours['train_seconds'] <= args.seconds
    print('\n| side | params | train s | iters | chars/s | final valid loss | best valid loss | CPU wait |')
    for name, r in results.items():
        wait = 'n/a' if r['cpu_wait_share'] is None else f"{100 * r['cpu_wait_share']:.0f}%"
        print(f"| {name} | {r['params']:,} | {r['train_seconds']:.1f} | {r['iters']} | {r['chars_per_sec']:.0f} | "
              f"{r['final_valid_loss']:.4f} | {r['best_valid_loss']:.4f} | {wait} |")
    print('(CPU wait: share of the wall time in which some task waited for a CPU; well above a few percent '
          'means other work shared the machine and the times are pessimistic)')
    if 'PyTorch' in results:
        t = results['PyTorch']
        print(f"throughput dlfs-gru / PyTorch: {ours['chars_per_sec'] / t['chars_per_sec']:.2f}x; "
              f"final valid loss difference: {ours['final_valid_loss'] - t['final_valid_loss']:+.4f} nats/char")
    print(f"target: valid loss <= {TARGET:.2f} nats/char after <= {args.seconds:g} s of training: "
          f"{'met' if met else 'NOT met'} ({ours['final_valid_loss']:.4f} after {ours['train_seconds']:.1f} s)")
    if ours['sample']:
        print(f"-- sample from the dlfs-gru model (temperature 0.8, seed {args.seed}):\n{ours['sample']}")

    report = {'command': 'python scripts/bench_char.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
              'commit': commit(), 'machine': machine(), 'numpy': numpy.__version__,
              'date': time.strftime('%Y-%m-%d %H:%M'), 'data': corpus.description, 'target': TARGET,
              'config': {k: v for k, v in vars(args).items() if k not in ('out', 'run_dir', 'data_dir')},
              'target_met': met, 'torch': torch_note or 'ran', 'results': results}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + '.json', 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=1)
    plot(results, args.out + '.png', args.seconds)
    print(f'wrote {args.out}.json and {args.out}.png')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))

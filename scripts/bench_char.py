"""Benchmark: valid loss of a character GRU on Tiny Shakespeare after a fixed training time.

    python scripts/bench_char.py                       # 100 s each for dlfs-gru and PyTorch
    python scripts/bench_char.py --seconds 30 --skip-torch
    python scripts/bench_char.py --out docs/char_target    # the figures of README and docs/performance.md

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
the commit) and <out>.png (loss against training time); <out> is
runs/char_target unless given (the figures in docs/ come from
--out docs/char_target).
"""
import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy

import support
from common.run.cli import ArgumentParser, HelpFormatter, nonnegative_int, positive_float, positive_int, ratio, run, select_backend
from common.run.settings import add_training_flags

TARGET = 1.60
#: The shared training flags' defaults here: the configuration of the 100-second target.
DEFAULTS = dict(lr=0.008, lr_decay=2.0, lr_epoch_factor=0.6, max_grad=5.0, batch_size=64, time_size=64,
                max_epoch=10 ** 6, eval_interval=0, eval_batch_size=32, out_dir=os.path.join('runs', 'bench_char'),
                model_file='CharRnnlm.npz')
HELP = {'lr': 'Adam learning rate',
        'lr_decay': 'divide the learning rate by this after an epoch that did not improve valid loss',
        'max_grad': 'gradient norm clipping',
        'valid_interval': 'evaluate on valid every N iterations (not counted as training time)',
        'eval_interval': 'print the dlfs-gru training loss every N iterations (0: never)'}
#: Shared training flags this benchmark has no use for (both sides could not
#: honour them alike, or --seconds says it): hidden from --help, an error when given.
UNUSED = ('max_epoch', 'max_seconds', 'grad_norm_interval', 'asgd_nonmono', 'asgd_restarts', 'asgd_latest',
          'weight_decay', 'variable_bptt', 'dtype', 'gpu', 'processes', 'resume', 'checkpoint')


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    p.add_argument('--seconds', type=positive_float, default=100.0, help='training time budget of each side')
    p.add_argument('--data-dir', help='directory holding Tiny Shakespeare input.txt (default: $DLFS_DATA_DIR, '
                   'then the download cache)')
    p.add_argument('--embed-size', type=positive_int, default=64)
    p.add_argument('--hidden-size', type=positive_int, default=256)
    p.add_argument('--layers', type=positive_int, default=1)
    p.add_argument('--dropout', type=ratio, default=0.0)
    p.add_argument('--tie', action='store_true', help='tie the output weight to the embedding')
    train = add_training_flags(p, DEFAULTS, HELP, hidden=UNUSED)
    train.add_argument('--threads', type=positive_int, default=2, help='torch.set_num_threads for PyTorch')
    p.add_argument('--skip-torch', action='store_true', help='run only the dlfs-gru side')
    p.add_argument('--sample', type=nonnegative_int, default=600,
                   help='characters to sample from the trained dlfs-gru model (temperature 0.8)')
    p.add_argument('--out', default=os.path.join('runs', 'char_target'),
                   help='write <out>.json and <out>.png (the docs figures: --out docs/char_target)')
    p.add_argument('--run-dir', dest='out_dir', default=argparse.SUPPRESS,
                   help='log.jsonl, plots and the model file of the dlfs-gru run (the same as --out-dir)')
    p.set_defaults(valid_interval=100, seed=0)
    return p


def parse(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [k for k in UNUSED if getattr(args, k) != parser.get_default(k)]
    if given:
        parser.error(f"--{given[0].replace('_', '-')} does not apply to this benchmark: it trains both sides "
                     f"alike, on the CPU, for --seconds")
    return args
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
    check_output_dir(args.out_dir)
    log_path = os.path.join(args.out_dir, 'log.jsonl')
    if os.path.exists(log_path):
        os.unlink(log_path)
    model = Rnnlm(len(corpus.vocab), args.embed_size, args.hidden_size, num_layers=args.layers,
                  dropout_ratio=args.dropout, tie_weights=args.tie)
    print(f'== dlfs-gru: {model.describe()}, {model.param_count():,} parameters', flush=True)
    settings = dataclasses.replace(TrainSettings.from_args(args, unit='char', model_file=DEFAULTS['model_file']),
                                   max_seconds=args.seconds, checkpoint_path=None)
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

class TorchRun:
    """The PyTorch side, trained as train_with_validation trains ours: Adam,
    the book's batching, valid every --valid-interval iterations and at each
    epoch's end, the learning rate decayed per epoch, until --seconds of training."""

    def __init__(self, corpus, args):
        import torch
        torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        self.torch, self.args = torch, args
        self.model = support.torch_rnnlm(len(corpus.vocab), args.embed_size, args.hidden_size, args.layers,
                                         args.dropout, args.tie)
        self.params = sum(p.numel() for p in self.model.parameters())
        print(f'== PyTorch {torch.__version__}: nn.GRU model, {self.params:,} parameters, {args.threads} threads',
              flush=True)
        # eps as common.optimizer.Adam
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr, eps=1e-7)
        self.train = torch.from_numpy(corpus.train.astype(numpy.int64))
        self.valid = torch.from_numpy(corpus.valid.astype(numpy.int64))
        self.points, self.best, self.train_seconds, self.iters = [], math.inf, 0.0, 0
        self.loss_sum, self.loss_count, self.last_step = 0.0, 0, 0.0

    def add_point(self):
        """Validate, and record the point with the mean training loss since the last one."""
        a = self.args
        point = {'iter': self.iters, 'train_seconds': self.train_seconds,
                 'train_ppl': math.exp(self.loss_sum / max(self.loss_count, 1)),
                 'valid_ppl': math.exp(support.torch_eval_loss(self.model, self.valid, a.eval_batch_size,
                                                               a.time_size))}
        self.loss_sum, self.loss_count = 0.0, 0
        self.points.append(point)
        print(f"| torch | iter {self.iters} | train time {self.train_seconds:.1f}[s] | train loss "
              f"{math.log(point['train_ppl']):.4f} | valid loss {math.log(point['valid_ppl']):.4f} nats/char",
              flush=True)

    def epoch(self):
        """One epoch, or less when the budget runs out; whether it ran out."""
        a, xs, ts = self.args, self.train[:-1], self.train[1:]
        size, B, T = len(xs), a.batch_size, a.time_size
        state, last_step = None, self.last_step
        stopped = False
        for it in range(size // (B * T)):
            if self.train_seconds + last_step > a.seconds:
                stopped = True
                break
            start = time.perf_counter()
            idx = support.window_indices(self.torch, size, B, size // B, it * T, T)
            loss, state = support.torch_train_step(self.model, self.optimizer, xs, ts, idx, state, a.max_grad)
            self.loss_sum += loss.item()
            self.loss_count += 1
            last_step = time.perf_counter() - start
            self.train_seconds += last_step
            self.iters += 1
            if self.iters % a.valid_interval == 0:
                self.add_point()
        self.last_step = last_step
        if not self.points or self.points[-1]['iter'] != self.iters:   # the epoch's (or budget's) end
            self.add_point()
        return stopped

    def decay(self):
        """As train_with_validation: divide by --lr-decay after an epoch that did not improve, then
        multiply by --lr-epoch-factor."""
        improved = self.points[-1]['valid_ppl'] < self.best
        self.best = min(self.best, self.points[-1]['valid_ppl'])
        for group in self.optimizer.param_groups:
            group['lr'] *= (1 if improved else 1 / self.args.lr_decay) * self.args.lr_epoch_factor

    def result(self):
        a = self.args
        return {'params': self.params, 'curve': self.points, 'train_seconds': self.train_seconds,
                'iters': self.iters, 'final_valid_loss': math.log(self.points[-1]['valid_ppl']),
                'best_valid_loss': math.log(self.best),
                'chars_per_sec': self.iters * a.batch_size * a.time_size / self.train_seconds,
                'version': self.torch.__version__}


def run_torch(corpus, args):
    side = TorchRun(corpus, args)
    while True:
        stopped = side.epoch()
        side.decay()
        if stopped:
            return side.result()


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


def run_sides(corpus, args):
    """{'dlfs-gru': ..., 'PyTorch': ...} (PyTorch when it runs) and the note on why it did not."""
    results = {'dlfs-gru': measured(run_ours, corpus, args)}
    torch_note = None
    if args.skip_torch:
        torch_note = 'skipped (--skip-torch)'
    elif support.torch_available() is None:
        torch_note = 'skipped: PyTorch is not installed'
    else:
        results['PyTorch'] = measured(run_torch, corpus, args)
    if torch_note:
        print(f'== PyTorch {torch_note}')
    return results, torch_note


def print_table(results, args):
    """The comparison, the target's verdict and the sample; whether the target was met."""
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
    return met


#: Flags left out of the report's configuration: where files are, and what does not apply.
NOT_CONFIG = ('out', 'out_dir', 'data_dir', 'save', 'divergence_factor', 'max_divergences') + UNUSED


def main(argv=None):
    args = parse(argv)
    backend = select_backend(False)
    backend.seed(args.seed)
    from dataset import chars
    corpus = chars.load_corpus('shakespeare', (0.9, 0.1, 0.0), data_dir=args.data_dir)
    info = support.machine()
    print(f'data: {corpus.description}: {len(corpus.train)} / {len(corpus.valid)} characters, '
          f'vocabulary {len(corpus.vocab)}; machine: {support.describe(info)}', flush=True)
    results, torch_note = run_sides(corpus, args)
    met = print_table(results, args)
    report = {'command': support.script_command('bench_char.py', argv), 'commit': support.commit(),
              'machine': support.describe(info), 'numpy': info['numpy'], 'blas': info['blas'],
              'date': time.strftime('%Y-%m-%d %H:%M'), 'data': corpus.description, 'target': TARGET,
              'config': {k: v for k, v in vars(args).items() if k not in NOT_CONFIG},
              'target_met': met, 'torch': torch_note or 'ran', 'results': results}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + '.json', 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=1)
    plot(results, args.out + '.png', args.seconds)
    print(f'wrote {args.out}.json and {args.out}.png')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))

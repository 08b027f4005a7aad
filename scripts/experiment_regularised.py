"""The book recipe against the regularised (AWD-LSTM) recipe on a small corpus, with an ablation.

    python scripts/experiment_regularised.py                       # PTB-mini, everything (≈ 1 h on 2 cores)
    python scripts/experiment_regularised.py --only book,regularised --jobs 2
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python scripts/experiment_regularised.py --only regularised-h300 --jobs 1 --threads 2   # alone, 2 cores
    python scripts/experiment_regularised.py --corpus wikitext-2 --seconds 600 --book-seconds 600 \
        --only book,regularised

Corpora, built by dataset/derived.py from real files in --data-dir (default $DLFS_DATA_DIR, then
../shared/data):

* ``ptb-mini``: train on ptb.test.txt, validate on the first half of the lines
  of ptb.valid.txt, test on the second half (words unseen in training: <unk>);
* ``wikitext-2``: train on WikiText-2's valid.txt, validate and test on the
  halves of its test.txt.

Every variant is one run of ``scripts/train_better_rnnlm.py`` (its command is
printed and recorded), ``--threads`` BLAS threads each (default 1:
OPENBLAS_NUM_THREADS=1; ``--jobs`` runs go side by side). Variants:

* ``book``: the chapter-6 recipe at H = 200 (lr 20, clip 0.25, dropout 0.5), 12 epochs;
* ``regularised``: ``--recipe regularised`` for ``--seconds`` of training;
  ``regularised-h300`` and ``regularised-h400`` the same with H = 300 and 400
  (``book-h300``, ``book-h400``: the book recipe at those sizes),
  ``regularised-ptb-dropouts`` with the input dropouts of AWD-LSTM's PTB
  command (0.4 and 0.25);
* ``no-<piece>``: the regularised recipe without one piece, for
  ``--ablation-epochs`` each (the same budget for every ablation, and a
  ``regularised-short`` run of that budget to compare with). Epochs, not
  seconds: on shared cores a time budget would buy each variant a different
  amount of training.

Training seconds count training iterations only (evaluation is left out), as
the scripts' ``--max-seconds`` does. The machine's load is recorded before and
after each run (/proc/loadavg): the cores are shared, so judge by epochs as well.
Writes ``<out>/results.json`` and ``<out>/curves.png`` (valid perplexity
against training seconds and against epochs).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import support
from common.run.cli import ArgumentParser, run
from dataset.derived import CORPORA, corpus_files

ROOT = support.ROOT
SCRIPT = os.path.join(ROOT, 'scripts', 'train_better_rnnlm.py')

SIZE = ['--wordvec-size', '200', '--hidden-size', '200', '--max-grad', '0.25', '--seed', '1', '--eval-interval', '0']
#: Wider models (embedding = hidden size) run with each recipe: ``book-h300``, ``regularised-h300``, ...
WIDER = (300, 400)
#: The pieces of the regularised recipe, and the flags that take each out.
PIECES = {
    'locked-dropout': ['--no-locked-dropout'],
    'embed-dropout': ['--embed-dropout', '0'],
    'weight-drop': ['--weight-drop', '0'],
    'ar-tar': ['--ar', '0', '--tar', '0'],
    'asgd': ['--asgd-nonmono', '0'],
    'variable-bptt': ['--no-variable-bptt'],
    'weight-decay': ['--weight-decay', '0'],
}


def sized(flags, hidden):
    """``flags`` with the embedding and hidden sizes set to ``hidden`` (equal: the weights are tied)."""
    flags = list(flags)
    for flag in ('--wordvec-size', '--hidden-size'):
        flags[flags.index(flag) + 1] = str(hidden)
    return flags


def variants(seconds, ablation_epochs, book_seconds=None, ablation_hidden=200, seed=1):
    """name -> (flags, budget description)."""
    size = list(SIZE)
    size[size.index('--seed') + 1] = str(seed)
    book = size + ['--lr', '20', '--dropout', '0.5', '--max-epoch', '12']
    v = {'book': (book + ['--max-seconds', str(book_seconds)], f'12 epochs or {book_seconds:g} s') if book_seconds
         else (book, '12 epochs'),
         'regularised': (size + ['--recipe', 'regularised', '--max-epoch', '100000', '--max-seconds', str(seconds)],
                         f'{seconds:g} s')}
    for hidden in WIDER:
        v[f'book-h{hidden}'] = (sized(v['book'][0], hidden), v['book'][1])
        v[f'regularised-h{hidden}'] = (sized(v['regularised'][0], hidden), f'{seconds:g} s')
    # AWD-LSTM's PTB command line has weaker input dropouts than its defaults (the recipe's)
    v['regularised-ptb-dropouts'] = (v['regularised'][0] + ['--dropout-input', '0.4', '--dropout-hidden', '0.25'],
                                     f'{seconds:g} s')
    short = sized(size, ablation_hidden) + ['--recipe', 'regularised', '--max-epoch', str(ablation_epochs)]
    v['regularised-short'] = (short, f'{ablation_epochs} epochs')
    for piece, off in PIECES.items():
        v[f'no-{piece}'] = (short + off, f'{ablation_epochs} epochs')
    return v


def run_variant(name, flags, files, out, threads=1):
    run_dir = os.path.join(out, name)
    cmd = [sys.executable, SCRIPT, '--train-file', files[0], '--valid-file', files[1], '--test-file', files[2],
           '--out-dir', run_dir, *flags]
    n = str(threads)
    env = support.child_env(OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n, OMP_NUM_THREADS=n)
    print(f'[{name}] {shlex.join(cmd)}', flush=True)
    load_before, t0 = support.loadavg(), time.time()
    with open(os.path.join(out, f'{name}.out'), 'w') as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    result = collect(name, out)
    result.update(command=shlex.join(cmd[1:]), returncode=rc, wall_s=time.time() - t0, load_before=load_before,
                  load_after=support.loadavg())
    result['threads'] = threads
    with open(os.path.join(run_dir, 'run.json'), 'w') as f:
        json.dump({k: result[k] for k in ('command', 'returncode', 'wall_s', 'load_before', 'load_after',
                                          'threads')}, f)
    print(f"[{name}] test ppl {result['test_ppl']} after {result['epochs']} epochs, "
          f"{result['train_seconds'] or 0:.0f} s of training (exit {rc})", flush=True)
    return name, result


def collect(name, out):
    """What the run ``name`` wrote: its log, and how it was run (run.json)."""
    run_dir = os.path.join(out, name)
    records = support.read_log(run_dir)
    epochs = [r for r in records if r['event'] == 'epoch']
    end = next((r for r in records if r['event'] == 'end'), {})
    start = next((r for r in records if r['event'] == 'asgd_start'), None)
    result = {'epochs': len(epochs), 'iters': end.get('iters'), 'train_seconds': end.get('train_seconds'),
              'best_valid_ppl': end.get('best_valid_ppl'), 'test_ppl': end.get('test_ppl'),
              'asgd_start_epoch': start and start['epoch'],
              'curve': [(r['epoch'], r['train_seconds'], r['valid_ppl']) for r in epochs]}
    path = os.path.join(run_dir, 'run.json')
    if os.path.exists(path):
        with open(path) as f:
            result.update(json.load(f))
    return result


def plot(results, path, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, r in results.items():
        if not r['curve']:
            continue
        e, s, v = zip(*r['curve'])
        style = '-' if name in ('book', 'regularised') else '--' if name.startswith('regularised') else ':'
        axes[0].plot(s, v, style, label=name)
        axes[1].plot(e, v, style, label=name)
    lowest = min((v for r in results.values() for _, _, v in r['curve']), default=None)
    for ax, xlabel in zip(axes, ('training seconds', 'epochs')):
        ax.set_xlabel(xlabel)
        ax.set_ylabel('valid perplexity')
        ax.set_yscale('log')
        if lowest:      # the first epochs' thousands would squeeze the part that matters
            ax.set_ylim(0.95 * lowest, 2 * lowest)
        ax.grid(True, which='both', alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    p = ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--corpus', choices=list(CORPORA), default='ptb-mini')
    p.add_argument('--data-dir', default=os.environ.get('DLFS_DATA_DIR', os.path.abspath(os.path.join(ROOT, '..', 'shared', 'data'))))
    p.add_argument('--seconds', type=float, default=1200, help='training budget of the regularised recipe')
    p.add_argument('--book-seconds', type=float, help='also stop the book recipe after this much training '
                                                      '(for a larger corpus: the same budget as the other)')
    p.add_argument('--ablation-epochs', type=int, default=10, help='training budget of each ablation run')
    p.add_argument('--ablation-hidden', type=int, default=200, help='model size (embedding = hidden) of the ablation')
    p.add_argument('--seed', type=int, default=1, help='seed of every run (weights, dropout masks, windows)')
    p.add_argument('--extra', default='', help='flags added to every run\'s command, e.g. '
                                               '--extra="--weight-decay 0" (explicit flags win over a recipe)')
    p.add_argument('--only', help='comma-separated variants (default: all): book, regularised, '
                                  'book-h300, book-h400, regularised-h300, regularised-h400, regularised-ptb-dropouts, '
                                  'regularised-short, ' + ', '.join(f'no-{k}' for k in PIECES))
    p.add_argument('--jobs', type=int, default=2, help='runs side by side')
    p.add_argument('--threads', type=int, default=1, help='BLAS threads of each run (one run alone on the '
                                                          'machine: --jobs 1 --threads <cores>)')
    p.add_argument('--report', action='store_true', help='run nothing: write results.json and curves.png '
                                                         'from the runs already in --out')
    p.add_argument('--out', default=os.path.join('runs', 'experiment_regularised'))
    args = p.parse_args(argv)
    todo = variants(args.seconds, args.ablation_epochs, args.book_seconds, args.ablation_hidden, args.seed)
    if args.only:
        unknown = [k for k in args.only.split(',') if k not in todo]
        if unknown:
            p.error(f"unknown variant {', '.join(unknown)}: choose from {', '.join(todo)}")
        todo = {k: todo[k] for k in args.only.split(',')}
    todo = {k: (flags + shlex.split(args.extra), budget) for k, (flags, budget) in todo.items()}
    out = os.path.join(args.out, args.corpus)
    files = corpus_files(args.corpus, args.data_dir, os.path.join(out, 'data'))
    results_path = os.path.join(out, 'results.json')
    info = support.machine()
    if not args.report:
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda kv: run_variant(kv[0], kv[1][0], files, out, args.threads), todo.items()))
    # every variant run so far (by this or an earlier call), from what the runs wrote
    everything = variants(args.seconds, args.ablation_epochs, args.book_seconds, args.ablation_hidden, args.seed)
    results = {name: dict(collect(name, out), budget=everything[name][1]) for name in everything
               if os.path.exists(os.path.join(out, name, 'run.json'))}
    with open(results_path, 'w') as f:
        json.dump({'corpus': args.corpus, 'cpu': info['cpu'], 'cores': info['cores'], 'blas': info['blas'],
                   'jobs': args.jobs, 'threads': args.threads, 'runs': results}, f, indent=1)
    plot(results, os.path.join(out, 'curves.png'), f'{args.corpus}: valid perplexity ({info["cpu"]}, '
                                                   f'{args.jobs} runs side by side, {args.threads} thread(s) each)')
    print(f'{"variant":20s} {"budget":>10s} {"epochs":>6s} {"train s":>8s} {"valid":>8s} {"test":>8s}')
    for name, r in results.items():
        print(f"{name:20s} {r['budget']:>10s} {r['epochs']:6d} {r['train_seconds'] or 0:8.0f} "
              f"{r['best_valid_ppl'] or float('nan'):8.2f} {r['test_ppl'] or float('nan'):8.2f}")
    print(f'wrote {results_path} and {os.path.join(out, "curves.png")}')


if __name__ == '__main__':
    sys.exit(run(main))

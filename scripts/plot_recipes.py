"""Perplexity curves of training runs side by side, e.g. the book recipe and the regularised one.

    python scripts/plot_recipes.py runs/book/log.jsonl runs/regularised/log.jsonl --out recipes.png
    python scripts/plot_recipes.py runs/book runs/regularised --labels book,AWD-LSTM
    python scripts/plot_recipes.py --run                   # both recipes, small, on PTB-mini (≈ 1 min)
    python scripts/plot_recipes.py --run --seconds 600 --hidden-size 200 --out recipes.png

Reads the ``log.jsonl`` the training scripts write (a run's file, or its
--out-dir): every finished epoch's train and valid perplexity and training
seconds (ch_gru/figures.py, read_run_log). A line's label is --labels, else
the run's --recipe, else its folder's name. With --run, no logs are given:
scripts/train_better_rnnlm.py runs ``--recipe book`` and ``--recipe regularised``
side by side (one BLAS thread each) for --seconds of training each on
PTB-mini (dataset/derived.py: ptb.test.txt to train on, the halves of
ptb.valid.txt to validate and test), with --gpu on CUDA, into --work-dir.
Writes --out (PNG): valid (and train) perplexity against epochs and valid
perplexity against training seconds.
"""
import os
import subprocess
import sys
import tempfile

import support
from common.run.cli import ArgumentParser, HelpFormatter, check_output_dir, positive_int, run

RECIPES = ('book', 'regularised')


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    p.add_argument('logs', nargs='*', help="runs' log.jsonl files (or the folders holding them)")
    p.add_argument('--labels', help='comma-separated labels of the runs, in order')
    p.add_argument('--out', default='recipes.png', help='the PNG to write')
    p.add_argument('--title', help='the figure title')
    small = p.add_argument_group('--run: train both recipes here')
    small.add_argument('--run', action='store_true', help='run the book and the regularised recipe on PTB-mini')
    small.add_argument('--seconds', type=positive_int, default=20, help='training seconds of each run')
    small.add_argument('--hidden-size', type=positive_int, default=64, help='hidden size (= embedding size)')
    small.add_argument('--max-eval-tokens', type=positive_int, default=10000,
                       help='valid and test tokens each run evaluates')
    small.add_argument('--work-dir', help="where the runs write (default: a temporary folder, removed after)")
    small.add_argument('--data-dir', help='directory holding ptb.valid.txt and ptb.test.txt; default: '
                       '$DLFS_DATA_DIR, then the download cache')
    small.add_argument('--seed', type=int, default=1, help='seed of each run')
    small.add_argument('--gpu', action='store_true', help='train on CUDA through CuPy')
    return p


def log_path(path):
    return os.path.join(path, 'log.jsonl') if os.path.isdir(path) else path


def recipe_command(recipe, args, files, out_dir):
    H = str(args.hidden_size)
    return [sys.executable, os.path.join(support.ROOT, 'scripts', 'train_better_rnnlm.py'), '--recipe', recipe,
            '--train-file', files[0], '--valid-file', files[1], '--test-file', files[2], '--out-dir', out_dir,
            '--wordvec-size', H, '--hidden-size', H, '--max-grad', '0.25', '--seed', str(args.seed),
            '--eval-interval', '0', '--max-epoch', '100000', '--max-seconds', str(args.seconds),
            '--max-eval-tokens', str(args.max_eval_tokens)] + (['--gpu'] if args.gpu else [])


def run_recipes(args, work):
    """Both recipes side by side on PTB-mini in ``work``; their log paths."""
    from common.errors import TrainingError
    from dataset.derived import ptb_mini
    files = ptb_mini(args.data_dir, check_output_dir(os.path.join(work, 'data'), '--work-dir'))
    env = support.child_env(OPENBLAS_NUM_THREADS='1', MKL_NUM_THREADS='1', OMP_NUM_THREADS='1')
    children = {}
    for recipe in RECIPES:
        out_dir = os.path.join(work, recipe)
        print(f'[{recipe}] {" ".join(recipe_command(recipe, args, files, out_dir)[1:])}', flush=True)
        children[recipe] = subprocess.Popen(recipe_command(recipe, args, files, out_dir), env=env, text=True,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for recipe, child in children.items():
        output = child.communicate()[0]
        if child.returncode != 0:
            lines = output.strip().splitlines() or [f'exit {child.returncode}']
            raise TrainingError(f'the {recipe} run failed: {lines[-1]}')
        print(f'[{recipe}] {output.strip().splitlines()[-2]}', flush=True)      # its '| end | ...' line
    return [os.path.join(work, recipe, 'log.jsonl') for recipe in RECIPES]


def labels_of(args, paths, curves):
    from common.errors import ConfigError
    if args.labels is None:
        return [c['recipe'] or os.path.basename(os.path.dirname(os.path.abspath(p))) for p, c in zip(paths, curves)]
    labels = [label.strip() for label in args.labels.split(',')]
    if len(labels) != len(paths) or len(set(labels)) != len(labels):
        raise ConfigError(f'--labels gives {len(labels)} label(s) for {len(paths)} run(s): give one distinct '
                          f'label per run')
    return labels


def main(argv=None):
    args = build_parser().parse_args(argv)
    from common.errors import ConfigError
    if args.run == bool(args.logs):
        raise ConfigError('give the runs\' log.jsonl files, or --run to train both recipes here (not both)')
    check_output_dir(os.path.dirname(os.path.abspath(args.out)), '--out')
    from ch_gru.figures import read_run_log
    from common.run.plotting import recipe_curves
    with tempfile.TemporaryDirectory() as scratch:
        paths = run_recipes(args, args.work_dir or scratch) if args.run else [log_path(p) for p in args.logs]
        curves = [read_run_log(p) for p in paths]
    labels = labels_of(args, paths, curves)
    if len(set(labels)) != len(labels):
        raise ConfigError(f"two runs have the label {max(labels, key=labels.count)!r}: name them with --labels")
    for label, curve in zip(labels, curves):
        print(f"{label}: {len(curve['epoch'])} epochs, best valid perplexity {min(curve['valid']):.2f}")
    title = args.title or ('PTB-mini: the book recipe and the regularised one, '
                           f'H = {args.hidden_size}, {args.seconds} s each' if args.run else 'perplexity of the runs')
    print(f'wrote {recipe_curves(dict(zip(labels, curves)), args.out, title)}')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))

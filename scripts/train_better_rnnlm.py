"""Train BetterRnnlm (two GRU layers, dropout, weight tying) on Penn Treebank.

    python scripts/train_better_rnnlm.py                 # the book's setup, GRU, lr 10
    python scripts/train_better_rnnlm.py --gpu           # the same on CUDA through CuPy
    mpiexec -n 2 python scripts/train_better_rnnlm.py    # data-parallel on 2 processes
    python scripts/train_better_rnnlm.py --cell lstm --lr 20
    python scripts/train_better_rnnlm.py --train-file my.train.txt --valid-file my.valid.txt
    python scripts/train_better_rnnlm.py --recipe regularised --cell lstm   # AWD-LSTM's regularisation

Each epoch prints train and valid perplexity, the learning rate, elapsed time
and tokens/s; the learning rate is divided by --lr-decay when valid perplexity
does not improve; the best parameters are kept and give the final test
perplexity. Writes <out-dir>/log.jsonl and <out-dir>/perplexity.png, and
<out-dir>/checkpoint.npz at every epoch end and on Ctrl-C:

    python scripts/train_better_rnnlm.py --resume runs/better_rnnlm/checkpoint.npz

Ctrl-C finishes the current iteration, saves the checkpoint, evaluates the
best parameters on test and exits with status 130 (interrupted).
"""
import os
import sys
import time

from argparse import BooleanOptionalAction

from common.run.cli import (ArgumentParser, HelpFormatter, check_output_dir, nonnegative_float, parse_args, positive_int,
                        ratio, run, select_backend)
from common.parallel.communicator import world
from common.parallel.launch import start_ranks
from common.run.settings import TrainSettings, add_training_flags

#: The book's chapter-6 hyperparameters, with learning rate 10 (stable for the GRU).
DEFAULTS = dict(lr=10.0, lr_decay=4.0, max_grad=0.25, batch_size=20, time_size=35, max_epoch=40, eval_interval=20,
                eval_batch_size=10, out_dir=os.path.join('runs', 'better_rnnlm'), model_file='BetterRnnlm.npz')
HELP = {'lr': 'SGD learning rate (10 is stable for GRU; the book used 20 for LSTM)',
        'seed': 'random seed (weights and dropout)'}


#: --recipe: defaults of the flags. ``book`` is the chapter-6 recipe (the flags' own defaults);
#: ``regularised`` the AWD-LSTM recipe as measured in docs/regularisation.md.
RECIPES = {
    'book': {},
    'regularised': dict(cell='lstm', lr=30.0, locked_dropout=True, dropout_input=0.65, dropout_hidden=0.3,
                        dropout_output=0.4, embed_dropout=0.1, weight_drop=0.5, ar_alpha=2.0, tar_beta=1.0,
                        asgd_nonmono=5, asgd_latest=0.5, weight_decay=1.2e-6, variable_bptt=True, lr_decay=1.0),
}


def recipe_flags(name):
    """The recipe as command-line flags, e.g. '--cell lstm --lr 30.0 --locked-dropout ...'."""
    flags = {'ar_alpha': 'ar', 'tar_beta': 'tar'}
    return ' '.join(f"--{flags.get(k, k).replace('_', '-')}" + ('' if v is True else f' {v}')
                    for k, v in RECIPES[name].items())


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    p.add_argument('--recipe', choices=sorted(RECIPES), default='book',
                   help="book: the chapter-6 training (dropout, tying, lr divided on a plateau), this script's "
                        "defaults. regularised: AWD-LSTM's recipe (docs/regularisation.md), the defaults become "
                        f"{recipe_flags('regularised')}; flags given explicitly win")
    data = p.add_argument_group('data')
    data.add_argument('--data-dir', help='directory holding ptb.train.txt, ptb.valid.txt, ptb.test.txt '
                      '(directly or in ptb/); default: $DLFS_DATA_DIR, then the download cache')
    data.add_argument('--train-file', help='train on this PTB-format file instead of ptb.train.txt '
                      '(one sentence per line, words separated by spaces); the vocabulary is built from it')
    data.add_argument('--valid-file', help='validation file (with --train-file; default ptb.valid.txt '
                      'encoded with the --train-file vocabulary)')
    data.add_argument('--test-file', help='test file (with --train-file; default ptb.test.txt)')
    data.add_argument('--max-train-tokens', type=positive_int,
                      help='use only the first N tokens of the training corpus (quick runs)')
    data.add_argument('--max-eval-tokens', type=positive_int,
                      help='use only the first N tokens of the valid and test corpora')

    model = p.add_argument_group('model')
    model.add_argument('--cell', choices=['gru', 'lstm'], default='gru', help='recurrent cell')
    model.add_argument('--wordvec-size', type=positive_int, default=650, help='embedding size')
    model.add_argument('--hidden-size', type=positive_int, default=650,
                       help='hidden size (equal to --wordvec-size: the output weight is tied to the embedding)')
    model.add_argument('--dropout', type=ratio, default=0.5, help='dropout ratio')
    model.add_argument('--reset-after', action='store_true',
                       help="GRU in PyTorch's and cuDNN's form (reset gate after the recurrent product, a recurrent "
                            "bias): its weights move to and from nn.GRU (docs/pytorch.md)")

    reg = p.add_argument_group('regularisation (AWD-LSTM; --recipe regularised turns them on)')
    reg.add_argument('--locked-dropout', action=BooleanOptionalAction, default=False,
                     help='variational dropout: one mask per sequence, shared by all time steps')
    reg.add_argument('--dropout-input', type=ratio, help='dropout on the embedding output (default --dropout)')
    reg.add_argument('--dropout-hidden', type=ratio, help='dropout between the layers (default --dropout)')
    reg.add_argument('--dropout-output', type=ratio, help="dropout on the last layer's output (default --dropout)")
    reg.add_argument('--embed-dropout', type=ratio, default=0.0,
                     help='drop whole words from the embedding for each batch, with this probability')
    reg.add_argument('--weight-drop', type=ratio, default=0.0,
                     help='DropConnect on the recurrent weights Wh: one mask per batch')
    reg.add_argument('--ar', type=nonnegative_float, default=0.0, dest='ar_alpha',
                     help="activation regularisation: add α · mean(h²) of the last layer's dropped outputs")
    reg.add_argument('--tar', type=nonnegative_float, default=0.0, dest='tar_beta',
                     help="temporal activation regularisation: add β · mean((h_t − h_t−1)²) of its outputs")

    add_training_flags(p, DEFAULTS, HELP)
    return p


def parse_recipe_args(argv=None):
    """``(args, checkpoint)``: the flags, with the defaults of the --recipe chosen
    (flags given explicitly win)."""
    probe = ArgumentParser(add_help=False)
    probe.add_argument('--recipe', choices=sorted(RECIPES), default='book')
    recipe = probe.parse_known_args(argv)[0].recipe
    parser = build_parser()
    parser.set_defaults(**RECIPES[recipe])
    return parse_args(parser, argv)


def regularisation_options(args):
    """The model's regularisation options (ch_gru.rnnlm.REGULARISATION) from the flags."""
    from ch_gru.rnnlm import REGULARISATION
    return {name: getattr(args, name) for name in REGULARISATION}


def load_corpora(args):
    """(train, valid, test, word_to_id, description) as host id arrays."""
    from dataset import ptb
    if args.train_file:
        valid_file = args.valid_file or ptb.path('valid', args.data_dir)
        test_file = args.test_file or ptb.path('test', args.data_dir)
        (train, valid, test), word_to_id, _ = ptb.load_files(args.train_file, valid_file, test_file)
        source = f'{args.train_file} / {valid_file} / {test_file}'
    else:
        if args.valid_file or args.test_file:
            from common.errors import ConfigError
            raise ConfigError('--valid-file and --test-file go with --train-file: give --train-file too')
        train, word_to_id, _ = ptb.load_data('train', args.data_dir)
        valid, _, _ = ptb.load_data('valid', args.data_dir)
        test, _, _ = ptb.load_data('test', args.data_dir)
        source = 'PTB train / valid / test'
    if args.max_train_tokens:
        train = train[:args.max_train_tokens]
    if args.max_eval_tokens:
        valid, test = valid[:args.max_eval_tokens], test[:args.max_eval_tokens]
    return train, valid, test, word_to_id, source


def main(argv=None):
    args, resume = parse_recipe_args(argv)
    settings = TrainSettings.from_args(args, resume, model_file=DEFAULTS['model_file'])
    ranks = start_ranks(args, argv, settings.checkpoint_path)
    if ranks is not None:                    # --processes K: the K ranks ran the job
        return ranks
    backend = select_backend(args.gpu, not args.no_cuda_graph, args.tf32)
    check_output_dir(args.out_dir)
    if args.seed is not None:
        backend.seed(args.seed)

    from ch_gru.better_rnnlm import BetterRnnlm
    from common.run.loop import make_sgd, train_with_validation
    from common.errors import ConfigError

    if args.wordvec_size != args.hidden_size:
        raise ConfigError(f'--wordvec-size ({args.wordvec_size}) must equal --hidden-size '
                          f'({args.hidden_size}): the output layer is tied to the embedding')
    t0 = time.time()
    train, valid, test, word_to_id, source = load_corpora(args)
    vocab_size = len(word_to_id)
    model = BetterRnnlm(vocab_size, args.wordvec_size, args.hidden_size, args.dropout, cell=args.cell,
                        dtype=args.dtype, reset_after=args.reset_after, **regularisation_options(args))
    print(f'data: {source}: {len(train)} / {len(valid)} / {len(test)} tokens, vocabulary {vocab_size} '
          f'({time.time() - t0:.1f}s)')
    print(f'model: {model.describe()}, {model.param_count():,} parameters, '
          f"backend {'CuPy (GPU)' if backend.GPU else 'NumPy (CPU)'}", flush=True)
    if world().size > 1:
        print(f'data-parallel: {world().describe()}', flush=True)
    result = train_with_validation(model, make_sgd(args.lr, settings), (train, valid, test), settings, resume=resume,
                                   vocab=list(word_to_id), options=vars(args),
                                   log_extra={'args': vars(args), 'vocab_size': vocab_size, 'data': source})
    print(f"wrote {result['plot']}, {result['log']}, {settings.save_path} and {result['checkpoint']}")
    return 130 if result['interrupted'] else 0


if __name__ == '__main__':
    sys.exit(run(main))

"""Train BetterRnnlm (two GRU layers, dropout, weight tying) on Penn Treebank.

    python scripts/train_better_rnnlm.py                 # the book's setup, GRU, lr 10
    python scripts/train_better_rnnlm.py --gpu           # the same on CUDA through CuPy
    mpiexec -n 2 python scripts/train_better_rnnlm.py    # data-parallel on 2 processes
    python scripts/train_better_rnnlm.py --cell lstm --lr 20
    python scripts/train_better_rnnlm.py --train-file my.train.txt --valid-file my.valid.txt

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

from common.cli import ArgumentParser, HelpFormatter, check_output_dir, parse_args, positive_int, ratio, run, select_backend
from common.distributed import world
from common.settings import TrainSettings, add_training_flags

#: The book's chapter-6 hyperparameters, with learning rate 10 (stable for the GRU).
DEFAULTS = dict(lr=10.0, lr_decay=4.0, max_grad=0.25, batch_size=20, time_size=35, max_epoch=40, eval_interval=20,
                eval_batch_size=10, out_dir=os.path.join('runs', 'better_rnnlm'), model_file='BetterRnnlm.npz')
HELP = {'lr': 'SGD learning rate (10 is stable for GRU; the book used 20 for LSTM)',
        'seed': 'random seed (weights and dropout)'}


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
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

    add_training_flags(p, DEFAULTS, HELP)
    return p


def load_corpora(args):
    """(train, valid, test, word_to_id, description) as host id arrays."""
    from dataset import ptb
    if args.train_file:
        valid_file = args.valid_file or _ptb_path('valid', args.data_dir)
        test_file = args.test_file or _ptb_path('test', args.data_dir)
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


def _ptb_path(split, data_dir):
    from dataset import ptb
    from dataset.download import fetch
    name = ptb.FILES[split]
    return fetch(name, 'ptb', ptb.MIRRORS, ptb.MD5[name], data_dir)


def main(argv=None):
    args, resume = parse_args(build_parser(), argv)
    backend = select_backend(args.gpu)
    check_output_dir(args.out_dir)
    settings = TrainSettings.from_args(args, resume, model_file=DEFAULTS['model_file'])
    if args.seed is not None:
        backend.seed(args.seed)

    from ch_gru.better_rnnlm import BetterRnnlm
    from common.optimizer import SGD
    from common.training import train_with_validation
    from common.errors import ConfigError

    if args.wordvec_size != args.hidden_size:
        raise ConfigError(f'--wordvec-size ({args.wordvec_size}) must equal --hidden-size '
                          f'({args.hidden_size}): the output layer is tied to the embedding')
    t0 = time.time()
    train, valid, test, word_to_id, source = load_corpora(args)
    vocab_size = len(word_to_id)
    model = BetterRnnlm(vocab_size, args.wordvec_size, args.hidden_size, args.dropout, cell=args.cell)
    print(f'data: {source}: {len(train)} / {len(valid)} / {len(test)} tokens, vocabulary {vocab_size} '
          f'({time.time() - t0:.1f}s)')
    print(f'model: {model.describe()}, {model.param_count():,} parameters, '
          f"backend {'CuPy (GPU)' if backend.GPU else 'NumPy (CPU)'}", flush=True)
    if world().size > 1:
        print(f'data-parallel: {world().describe()}', flush=True)
    result = train_with_validation(model, SGD(args.lr), (train, valid, test), settings, resume=resume,
                                   vocab=list(word_to_id), options=vars(args),
                                   log_extra={'args': vars(args), 'vocab_size': vocab_size, 'data': source})
    print(f"wrote {result['plot']}, {result['log']}, {settings.save_path} and {result['checkpoint']}")
    return 130 if result['interrupted'] else 0


if __name__ == '__main__':
    sys.exit(run(main))

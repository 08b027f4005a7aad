"""Train BetterRnnlm (two GRU layers, dropout, weight tying) on Penn Treebank.

    python scripts/train_better_rnnlm.py                 # the book's setup, GRU, lr 10
    python scripts/train_better_rnnlm.py --gpu           # the same on CUDA through CuPy
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

from common.cli import (ArgumentParser, HelpFormatter, add_checkpoint_flags, check_output_dir, checkpoint_options,
                        nonnegative_int, optional_positive_float, parse_args, positive_float, positive_int, ratio,
                        run, select_backend)


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

    train = p.add_argument_group('training')
    train.add_argument('--batch-size', type=positive_int, default=20, help='rows per batch')
    train.add_argument('--time-size', type=positive_int, default=35, help='truncated BPTT length')
    train.add_argument('--lr', type=positive_float, default=10.0,
                       help='SGD learning rate (10 is stable for GRU; the book used 20 for LSTM)')
    train.add_argument('--lr-decay', type=positive_float, default=4.0,
                       help='divide the learning rate by this when valid perplexity does not improve')
    train.add_argument('--max-epoch', type=positive_int, default=40, help='epochs')
    train.add_argument('--max-grad', type=optional_positive_float, default=0.25,
                       help="clip the global gradient norm to this ('none' to disable)")
    train.add_argument('--eval-interval', type=nonnegative_int, default=20,
                       help='print training perplexity every N iterations (0: never)')
    train.add_argument('--eval-batch-size', type=positive_int, default=10, help='batch size of evaluation')
    train.add_argument('--seed', type=int, default=None, help='random seed (weights and dropout)')
    train.add_argument('--gpu', action='store_true', help='run on CUDA through CuPy')

    out = p.add_argument_group('output')
    out.add_argument('--out-dir', default=os.path.join('runs', 'better_rnnlm'),
                     help='directory for log.jsonl and perplexity.png')
    out.add_argument('--save', default=None,
                     help='write the best parameters here (.npz); default <out-dir>/BetterRnnlm.npz')
    add_checkpoint_flags(p)
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
    save_path = args.save or os.path.join(args.out_dir, 'BetterRnnlm.npz')
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
    result = train_with_validation(
        model, SGD(args.lr), train, valid, test, max_epoch=args.max_epoch, batch_size=args.batch_size,
        time_size=args.time_size, max_grad=args.max_grad, eval_interval=args.eval_interval,
        lr_decay=args.lr_decay, eval_batch_size=args.eval_batch_size, out_dir=args.out_dir,
        save_path=save_path, vocab=list(word_to_id), log_extra={'args': vars(args), 'vocab_size': vocab_size, 'data': source},
        **checkpoint_options(args, resume))
    print(f"wrote {result['plot']}, {result['log']}, {save_path} and {result['checkpoint']}")
    return 130 if result['interrupted'] else 0


if __name__ == '__main__':
    sys.exit(run(main))

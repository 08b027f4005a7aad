"""Train a character-level recurrent language model (GRU by default).

    python scripts/train_char_rnnlm.py                          # Tiny Shakespeare, 90/5/5
    python scripts/train_char_rnnlm.py --max-seconds 100 --split 0.9,0.1,0
    python scripts/train_char_rnnlm.py --corpus ptb-char --layers 2 --hidden-size 512
    python scripts/train_char_rnnlm.py --corpus my.txt --sentences --optimizer adagrad --lr 0.1
    python scripts/train_char_rnnlm.py --gpu                    # on CUDA through CuPy

Continuous text is read with truncated BPTT like the word-level models;
--sentences makes every line one sequence between <bos> and <eos>, padded and
batched so that none leaks into the next. Reports the loss in nats/char, bits
per character and perplexity every --eval-interval iterations (train), every
--valid-interval iterations (valid) and every epoch (train and valid). Writes
<out-dir>/log.jsonl, <out-dir>/perplexity.png (per epoch), <out-dir>/curve.png
(with --valid-interval) and the best parameters with their vocabulary
(<out-dir>/CharRnnlm.npz), which scripts/generate_text.py samples from, and
a checkpoint (<out-dir>/checkpoint.npz) at every epoch end and on Ctrl-C, from
which --resume continues (see README, Reliability).
"""
import argparse
import functools
import os
import sys
import time

from common.cli import (ArgumentParser, HelpFormatter, add_checkpoint_flags, check_output_dir, checkpoint_options,
                        nonnegative_int, optional_positive_float, parse_args, positive_float, positive_int, ratio,
                        run, select_backend)

OPTIMIZERS = ('sgd', 'momentum', 'adagrad', 'adam')


def split_fractions(text):
    """'0.9,0.05,0.05' -> (0.9, 0.05, 0.05)."""
    from dataset.chars import check_fractions
    from common.errors import DataError
    try:
        return check_fractions(float(f) for f in text.split(','))
    except DataError as exc:                 # a ValueError too: catch it first
        raise argparse.ArgumentTypeError(str(exc)) from None
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not three numbers like 0.9,0.05,0.05') from None


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    data = p.add_argument_group('data')
    data.add_argument('--corpus', default='shakespeare',
                      help="'shakespeare' (Tiny Shakespeare), 'ptb-char' (PTB's ptb.char.*.txt) or the path of "
                           "a UTF-8 text file")
    data.add_argument('--format', choices=['text', 'ptb-char'], default='text',
                      help="how a --corpus PATH is written: plain text, or PTB's character format "
                           "(characters separated by spaces, '_' between words)")
    data.add_argument('--split', type=split_fractions, default=None,
                      help='train,valid,test fractions of a single-file corpus, split in this order '
                           '(default 0.9,0.05,0.05; by lines with --sentences)')
    data.add_argument('--sentences', action='store_true',
                      help='sentence mode: every non-empty line is one sequence <bos> ... <eos>')
    data.add_argument('--data-dir', help='directory holding input.txt / ptb.char.*.txt (directly or in '
                      'shakespeare/, ptb/); default: $DLFS_DATA_DIR, then the download cache')
    data.add_argument('--max-chars', type=positive_int,
                      help='use only the first N characters of each split (quick runs)')

    model = p.add_argument_group('model')
    model.add_argument('--cell', choices=['gru', 'lstm', 'rnn'], default='gru', help='recurrent cell')
    model.add_argument('--layers', type=positive_int, default=1, help='recurrent layers')
    model.add_argument('--embed-size', type=positive_int, default=64, help='character embedding size')
    model.add_argument('--hidden-size', type=positive_int, default=256, help='hidden size')
    model.add_argument('--dropout', type=ratio, default=0.0, help='dropout ratio')
    model.add_argument('--tie', action='store_true',
                       help='tie the output weight to the embedding (needs --embed-size == --hidden-size)')

    train = p.add_argument_group('training')
    train.add_argument('--optimizer', choices=OPTIMIZERS, default='adam', help='optimizer')
    train.add_argument('--lr', type=positive_float, default=0.008, help='learning rate')
    train.add_argument('--lr-decay', type=positive_float, default=2.0,
                       help='divide the learning rate by this when valid loss does not improve over an epoch '
                            '(1: never)')
    train.add_argument('--lr-epoch-factor', type=positive_float, default=0.6,
                       help='multiply the learning rate by this after every epoch (1: never)')
    train.add_argument('--max-grad', type=optional_positive_float, default=5.0,
                       help="clip the global gradient norm to this ('none' to disable)")
    train.add_argument('--batch-size', type=positive_int, default=64, help='rows per batch')
    train.add_argument('--time-size', type=positive_int, default=64,
                       help='truncated BPTT length (with --sentences: window length inside a padded batch)')
    train.add_argument('--max-epoch', type=positive_int, default=20, help='epochs at most')
    train.add_argument('--max-seconds', type=positive_float, default=None,
                       help='stop once this many seconds were spent training (evaluation not counted); '
                            'the epoch in progress is evaluated')
    train.add_argument('--eval-interval', type=nonnegative_int, default=50,
                       help='print the training loss every N iterations (0: never)')
    train.add_argument('--valid-interval', type=nonnegative_int, default=0,
                       help='evaluate on valid every N iterations too, and draw curve.png (0: per epoch only)')
    train.add_argument('--eval-batch-size', type=positive_int, default=32, help='batch size of evaluation')
    train.add_argument('--seed', type=int, default=None, help='random seed (weights, dropout, batch order)')
    train.add_argument('--gpu', action='store_true', help='run on CUDA through CuPy')

    out = p.add_argument_group('output')
    out.add_argument('--out-dir', default=os.path.join('runs', 'char_rnnlm'),
                     help='directory for log.jsonl and the plots')
    out.add_argument('--save', default=None,
                     help='write the best parameters and the vocabulary here (.npz); '
                          'default <out-dir>/CharRnnlm.npz')
    out.add_argument('--sample', type=nonnegative_int, default=300,
                     help='print this many characters sampled from the best model at the end (0: none)')
    out.add_argument('--sample-temperature', type=float, default=0.8, help='temperature of that sample')
    add_checkpoint_flags(p)
    return p


def make_optimizer(name, lr):
    from common.optimizer import SGD, AdaGrad, Adam, Momentum
    return {'sgd': SGD, 'momentum': Momentum, 'adagrad': AdaGrad, 'adam': Adam}[name](lr)


def main(argv=None):
    args, resume = parse_args(build_parser(), argv)
    backend = select_backend(args.gpu)
    check_output_dir(args.out_dir)
    save_path = args.save or os.path.join(args.out_dir, 'CharRnnlm.npz')
    if args.seed is not None:
        backend.seed(args.seed)

    from ch_gru.generate import CharCodec, TextGenerator
    from ch_gru.rnnlm import Rnnlm
    from common.errors import ConfigError
    from common.sentences import SentenceTrainer, eval_sentences
    from common.training import train_with_validation
    from dataset import chars

    if args.tie and args.embed_size != args.hidden_size:
        raise ConfigError(f'--tie needs --embed-size ({args.embed_size}) equal to --hidden-size '
                          f'({args.hidden_size}): make them equal or drop --tie')
    if args.format != 'text' and args.corpus in ('shakespeare', 'ptb-char'):
        raise ConfigError(f'--format goes with --corpus PATH: {args.corpus} has a known format; drop --format')
    t0 = time.time()
    corpus = chars.load_corpus(args.corpus, args.split, args.sentences, args.format, args.data_dir,
                               args.max_chars)
    vocab = corpus.vocab
    model = Rnnlm(len(vocab), args.embed_size, args.hidden_size, num_layers=args.layers,
                  dropout_ratio=args.dropout, cell=args.cell, tie_weights=args.tie)
    test_size = 0 if corpus.test is None else len(corpus.test)
    print(f'data: {corpus.description}: {len(corpus.train)} / {len(corpus.valid)} / {test_size} tokens, '
          f"vocabulary {len(vocab)}{' (with <bos>, <eos>)' if args.sentences else ''} ({time.time() - t0:.1f}s)")
    print(f'model: {model.describe()}, {model.param_count():,} parameters, '
          f"backend {'CuPy (GPU)' if backend.GPU else 'NumPy (CPU)'}", flush=True)

    optimizer = make_optimizer(args.optimizer, args.lr)
    trainer = evaluate = None
    if args.sentences:
        trainer = SentenceTrainer(model, optimizer, vocab.bos)
        evaluate = functools.partial(eval_sentences, bos_id=vocab.bos, batch_size=args.eval_batch_size,
                                     time_size=args.time_size)
    result = train_with_validation(
        model, optimizer, corpus.train, corpus.valid, corpus.test, max_epoch=args.max_epoch,
        batch_size=args.batch_size, time_size=args.time_size, max_grad=args.max_grad,
        eval_interval=args.eval_interval, lr_decay=args.lr_decay, eval_batch_size=args.eval_batch_size,
        out_dir=args.out_dir, save_path=save_path, vocab=vocab.tokens, unit='char', trainer=trainer,
        evaluate=evaluate, max_seconds=args.max_seconds, valid_interval=args.valid_interval or None,
        save_meta=corpus.save_meta(), lr_epoch_factor=args.lr_epoch_factor,
        log_extra={'args': vars(args), 'vocab_size': len(vocab), 'data': corpus.description},
        **checkpoint_options(args, resume))
    outputs = [result['plot'], result['log']] + ([os.path.join(args.out_dir, 'curve.png')]
                                                  if args.valid_interval else [])
    print(f"trained {result['train_seconds']:.1f}s; wrote {', '.join(outputs)}, {save_path} and "
          f"{result['checkpoint']}")
    if args.sample and result['history']['epoch']:
        generator = TextGenerator(model, CharCodec(vocab))
        text = generator.sample(length=args.sample, temperature=args.sample_temperature, seed=args.seed)
        print(f'-- sample ({args.sample} tokens, temperature {args.sample_temperature:g}):\n{text}')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))

"""Train a character-level recurrent language model (GRU by default).

    python scripts/train_char_rnnlm.py                          # Tiny Shakespeare, 90/5/5
    python scripts/train_char_rnnlm.py --max-seconds 100 --split 0.9,0.1,0
    python scripts/train_char_rnnlm.py --corpus ptb-char --layers 2 --hidden-size 512
    python scripts/train_char_rnnlm.py --corpus my.txt --sentences --optimizer adagrad --lr 0.1
    python scripts/train_char_rnnlm.py --gpu                    # on CUDA through CuPy
    mpiexec -n 2 python scripts/train_char_rnnlm.py             # data-parallel on 2 processes

Continuous text is read with truncated BPTT like the word-level models;
--sentences makes every line one sequence between <bos> and <eos>, padded and
batched so that none leaks into the next. Reports the loss in nats/char, bits
per character and perplexity every --eval-interval iterations (train), every
--valid-interval iterations (valid) and every epoch (train and valid). Writes
<out-dir>/log.jsonl, <out-dir>/perplexity.png (per epoch), <out-dir>/curve.png
(with --valid-interval) and the best parameters with their vocabulary
(<out-dir>/CharRnnlm.npz), which scripts/generate_text.py samples from, and
a checkpoint (<out-dir>/checkpoint.npz) at every epoch end and on Ctrl-C, from
which --resume continues (see README, Reliability); after Ctrl-C the run exits
with status 130.
"""
import argparse
import functools
import os
import sys
import time

from common.run.cli import (ArgumentParser, HelpFormatter, check_output_dir, nonnegative_int, parse_args, positive_int,
                        ratio, run, select_backend)
from common.parallel.communicator import world
from common.parallel.launch import start_ranks
from common.run.settings import TrainSettings, add_training_flags

OPTIMIZERS = ('sgd', 'momentum', 'adagrad', 'adam')
#: The configuration of the 100-second target (docs/performance.md).
DEFAULTS = dict(lr=0.008, lr_decay=2.0, lr_epoch_factor=0.6, max_grad=5.0, batch_size=64, time_size=64, max_epoch=20,
                eval_interval=50, eval_batch_size=32, out_dir=os.path.join('runs', 'char_rnnlm'),
                model_file='CharRnnlm.npz')
HELP = {'lr_decay': 'divide the learning rate by this when valid loss does not improve over an epoch (1: never)',
        'time_size': 'truncated BPTT length (with --sentences: window length inside a padded batch)',
        'eval_interval': 'print the training loss every N iterations (0: never)'}


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
    model.add_argument('--reset-after', action='store_true',
                       help="GRU in PyTorch's and cuDNN's form (reset gate after the recurrent product, a recurrent "
                            "bias): its weights move to and from nn.GRU (docs/pytorch.md)")
    model.add_argument('--tie', action='store_true',
                       help='tie the output weight to the embedding (needs --embed-size == --hidden-size)')

    train = add_training_flags(p, DEFAULTS, HELP)
    train.add_argument('--optimizer', choices=OPTIMIZERS, default='adam', help='optimizer')
    out = p.add_argument_group('sample')
    out.add_argument('--sample', type=nonnegative_int, default=300,
                     help='print this many characters sampled from the best model at the end (0: none)')
    out.add_argument('--sample-temperature', type=float, default=0.8, help='temperature of that sample')
    return p


def make_optimizer(name, lr):
    from common.optimizer import SGD, AdaGrad, Adam, Momentum
    return {'sgd': SGD, 'momentum': Momentum, 'adagrad': AdaGrad, 'adam': Adam}[name](lr)


def check_model_args(args):
    """One line for options that contradict each other."""
    from common.errors import ConfigError
    if args.tie and args.embed_size != args.hidden_size:
        raise ConfigError(f'--tie needs --embed-size ({args.embed_size}) equal to --hidden-size '
                          f'({args.hidden_size}): make them equal or drop --tie')
    if args.format != 'text' and args.corpus in ('shakespeare', 'ptb-char'):
        raise ConfigError(f'--format goes with --corpus PATH: {args.corpus} has a known format; drop --format')


def main(argv=None):
    args, resume = parse_args(build_parser(), argv)
    settings = TrainSettings.from_args(args, resume, unit='char', model_file=DEFAULTS['model_file'])
    ranks = start_ranks(args, argv, settings.checkpoint_path)
    if ranks is not None:                    # --processes K: the K ranks ran the job
        return ranks
    backend = select_backend(args.gpu, not args.no_cuda_graph, args.tf32)
    check_output_dir(args.out_dir)
    if args.seed is not None:
        backend.seed(args.seed)

    from ch_gru.generate import CharCodec, TextGenerator
    from ch_gru.rnnlm import Rnnlm
    from common.batching.sentences import SentenceTrainer, eval_sentences
    from common.run.loop import train_with_validation
    from dataset import chars

    check_model_args(args)
    t0 = time.time()
    corpus = chars.load_corpus(args.corpus, args.split, args.sentences, args.format, args.data_dir,
                               args.max_chars)
    vocab = corpus.vocab
    model = Rnnlm(len(vocab), args.embed_size, args.hidden_size, num_layers=args.layers,
                  dropout_ratio=args.dropout, cell=args.cell, tie_weights=args.tie, dtype=args.dtype,
                  reset_after=args.reset_after)
    test_size = 0 if corpus.test is None else len(corpus.test)
    print(f'data: {corpus.description}: {len(corpus.train)} / {len(corpus.valid)} / {test_size} tokens, '
          f"vocabulary {len(vocab)}{' (with <bos>, <eos>)' if args.sentences else ''} ({time.time() - t0:.1f}s)")
    print(f'model: {model.describe()}, {model.param_count():,} parameters, '
          f"backend {'CuPy (GPU)' if backend.GPU else 'NumPy (CPU)'}", flush=True)
    if world().size > 1:
        print(f'data-parallel: {world().describe()}', flush=True)

    if args.optimizer == 'sgd':
        from common.run.loop import make_sgd
        optimizer = make_sgd(args.lr, settings)        # NT-ASGD with --asgd-nonmono
    else:
        optimizer = make_optimizer(args.optimizer, args.lr)
    trainer = evaluate = None
    if args.sentences:
        trainer = SentenceTrainer(model, optimizer, vocab.bos)
        evaluate = functools.partial(eval_sentences, bos_id=vocab.bos, batch_size=args.eval_batch_size,
                                     time_size=args.time_size)
    result = train_with_validation(model, optimizer, (corpus.train, corpus.valid, corpus.test), settings,
                                   trainer=trainer, evaluate=evaluate, resume=resume, vocab=vocab.tokens,
                                   save_meta=corpus.save_meta(), options=vars(args),
                                   log_extra={'args': vars(args), 'vocab_size': len(vocab), 'data': corpus.description})
    outputs = [result['plot'], result['log']] + ([os.path.join(args.out_dir, 'curve.png')]
                                                  if args.valid_interval else [])
    print(f"trained {result['train_seconds']:.1f}s; wrote {', '.join(outputs)}, {settings.save_path} and "
          f"{result['checkpoint']}")
    if args.sample and result['history']['epoch'] and world().is_root:
        generator = TextGenerator(model, CharCodec(vocab))
        text = generator.sample(length=args.sample, temperature=args.sample_temperature, seed=args.seed)
        print(f'-- sample ({args.sample} tokens, temperature {args.sample_temperature:g}):\n{text}')
    return 130 if result['interrupted'] else 0


if __name__ == '__main__':
    sys.exit(run(main))

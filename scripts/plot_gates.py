"""The update and reset gates (z, r) of a character GRU over a passage of real text, as a heatmap.

    python scripts/plot_gates.py                                     # trains a small char GRU first
    python scripts/plot_gates.py --model-file runs/char_rnnlm/CharRnnlm.npz --out gates.png
    python scripts/plot_gates.py --passage 'ROMEO:\nBut soft, what light' --units 48 --gpu

Without --model-file a one-layer GRU (ch_gru.rnnlm.Rnnlm) trains --train-iters
Adam steps on the start of Tiny Shakespeare's training part (or --corpus
ptb-char). With --model-file the model is the one scripts/train_char_rnnlm.py
wrote (its vocabulary is in the file); --layer picks its GRU layer. The
passage, --length characters from the first line start of the corpus's
validation part unless --passage gives one, goes through the model once from
the zero state; z = σ(x Wxz + h Whz + bz) (how much of the state is replaced)
and r = σ(x Wxr + h Whr + br) (how much of the old state the candidate reads)
are read where TimeGRU's forward left them (ch_gru/figures.py). The --units
units whose z varies most over the passage are shown, in unit order. Writes
--out (PNG).
"""
import os
import sys

from common.run.cli import (ArgumentParser, HelpFormatter, check_output_dir, nonnegative_int, positive_float,
                            positive_int, run, select_backend)

CORPORA = {'shakespeare': 'Tiny Shakespeare', 'ptb-char': 'PTB characters'}


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    p.add_argument('--out', default='gates.png', help='the PNG to write')
    p.add_argument('--model-file', help='a character GRU written by scripts/train_char_rnnlm.py (default: train '
                   'one here)')
    p.add_argument('--layer', type=nonnegative_int, default=0, help="which of the model's GRU layers")
    p.add_argument('--corpus', choices=list(CORPORA), default='shakespeare',
                   help='the corpus to train on and to take the passage from')
    p.add_argument('--data-dir', help='directory holding input.txt / ptb.char.*.txt (directly or in shakespeare/, '
                   'ptb/); default: $DLFS_DATA_DIR, then the download cache')
    p.add_argument('--passage', help='the text to show (default: from the validation part of --corpus)')
    p.add_argument('--length', type=positive_int, default=72, help='characters of the default passage')
    p.add_argument('--units', type=positive_int, default=32, help='units to show (those whose z varies most)')
    train = p.add_argument_group('training (without --model-file)')
    train.add_argument('--hidden-size', type=positive_int, default=128, help='hidden size')
    train.add_argument('--embed-size', type=positive_int, default=32, help='character embedding size')
    train.add_argument('--train-iters', type=positive_int, default=150, help='Adam steps')
    train.add_argument('--batch-size', type=positive_int, default=32, help='batch size')
    train.add_argument('--time-size', type=positive_int, default=64, help='truncated BPTT length')
    train.add_argument('--lr', type=positive_float, default=0.008, help='Adam learning rate')
    train.add_argument('--seed', type=int, default=0, help='seed of the weights')
    p.add_argument('--gpu', action='store_true', help='run on CUDA through CuPy')
    return p


def trained_model(args, corpus):
    """A one-layer char GRU after --train-iters Adam steps on ``corpus``'s training part."""
    import numpy
    from ch_gru import figures
    from ch_gru.rnnlm import Rnnlm
    numpy.random.seed(args.seed)
    model = Rnnlm(len(corpus.vocab), args.embed_size, args.hidden_size, num_layers=1, dropout_ratio=0.0,
                  cell='gru', tie_weights=False)
    return figures.train_briefly(model, corpus.train, args.train_iters, args.batch_size, args.time_size, args.lr)


def default_passage(corpus, length):
    """``length`` characters of the validation part, from its first non-empty line start."""
    text = corpus.vocab.decode(corpus.valid[:length + 400])
    text = text[text.find('\n') + 1:].lstrip('\n')
    return text[:length]


def load_model(args, corpus):
    """(model, vocab, description): --model-file, or a model trained here on ``corpus``."""
    from ch_gru.generate import TextGenerator
    from common.errors import ConfigError
    if args.model_file is None:
        description = f'a 1-layer GRU (H = {args.hidden_size}) after {args.train_iters} Adam steps'
        return trained_model(args, corpus), corpus.vocab, description
    generator = TextGenerator.load(args.model_file)
    if generator.codec.level != 'char':
        raise ConfigError(f'{args.model_file} is a word model: give a character model of '
                          f'scripts/train_char_rnnlm.py')
    config = generator.model.config
    layers = config['num_layers']
    description = (f"{os.path.basename(args.model_file)} ({layers} {config['cell'].upper()} "
                   f"layer{'s' if layers > 1 else ''}, H = {config['hidden_size']})")
    return generator.model, generator.codec.vocab, description


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_output_dir(os.path.dirname(os.path.abspath(args.out)), '--out')
    select_backend(args.gpu)
    from ch_gru import figures
    from common.run.plotting import gate_heatmap
    from dataset import chars
    corpus = None
    if args.model_file is None or args.passage is None:
        need = args.train_iters * args.batch_size * args.time_size + 1 if args.model_file is None else 0
        corpus = chars.load_corpus(args.corpus, data_dir=args.data_dir, max_chars=max(need, 100_000))
    model, vocab, description = load_model(args, corpus)
    passage = args.passage.replace('\\n', '\n') if args.passage else default_passage(corpus, args.length)
    ids = vocab.encode(passage, source='the passage').tolist()
    shown = list(passage)
    if vocab.sentences:                       # sentence-mode models read from <bos>
        ids, shown = [vocab.bos] + ids, ['^'] + shown
    z, r = figures.gates_over_text(model, ids, layer=args.layer)
    units = figures.most_varying(z, args.units)
    print(f'passage ({len(passage)} characters): {passage!r}')
    print(f'mean z {z.mean():.3f}, mean r {r.mean():.3f}; showing {len(units)} of {z.shape[1]} units')
    where = f"{CORPORA[args.corpus]}'s validation part" if args.passage is None else 'text'
    title = f'GRU gates over a passage of {where}: {description}, layer {args.layer}'
    gates = {'z (update)': z[:, units], 'r (reset)': r[:, units]}
    print(f'wrote {gate_heatmap(shown, gates, args.out, units=units, title=title)}')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))

"""Convert the book's parameter file of a language model (a float16 pickle) into a model file of this framework.

    python scripts/convert_book_weights.py BetterRnnlm.pkl                       # writes BetterRnnlm.npz
    python scripts/convert_book_weights.py Rnnlm.pkl rnnlm.npz --model rnnlm
    python scripts/convert_book_weights.py BetterRnnlm.pkl --ptb-vocab --data-dir DIR

The pickle is read without running code (common/run/book_pickle.py). The
model's sizes come from the arrays' shapes, in the book's order: the embedding
(V, D); per recurrent layer Wx (D or H, gH), Wh (H, gH) and b (gH,), with
g = 4 for the book's LSTM (3 for a GRU, 1 for an RNN); then the output layer:
the embedding transposed once more (the book's weight tying), a weight of its
own (untied), or the bias alone (the tied weight listed once). The output
file holds float32 parameters (the values of the book's float16), the model's
options and, with --ptb-vocab, the PTB vocabulary in id order: it loads with
``load_params`` of a model of those options, with ``ch_gru.rnnlm.load_model``
and with scripts/generate_text.py. The book's other models (seq2seq,
attention) need no conversion: their ``load_params`` reads the book's file.
"""
import os
import sys

from common.run.cli import ArgumentParser, HelpFormatter, ratio, run, select_backend

#: gate blocks stacked in Wx, Wh and b -> cell
CELLS = {4: 'lstm', 3: 'gru', 1: 'rnn'}
MODELS = ('auto', 'better_rnnlm', 'rnnlm')


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    p.add_argument('book_file', help="the book's parameter file (a pickle), e.g. BetterRnnlm.pkl")
    p.add_argument('out', nargs='?', default=None,
                   help='the model file to write (default: BOOK_FILE with .npz in place of its suffix)')
    p.add_argument('--model', choices=MODELS, default='auto',
                   help="better_rnnlm: the book's BetterRnnlm (2 layers, tied); rnnlm: any Rnnlm (the book's "
                        "ch06 Rnnlm: 1 LSTM layer, untied); auto: better_rnnlm when the file fits it, else rnnlm")
    p.add_argument('--dropout-ratio', type=ratio, default=None,
                   help="the dropout ratio to record for further training (default: 0.5 for better_rnnlm, "
                        "0 for rnnlm, as the book's models)")
    p.add_argument('--ptb-vocab', action='store_true',
                   help='store the PTB vocabulary (from ptb.train.txt) with the model, for generate_text.py')
    p.add_argument('--data-dir', default=None, help='where ptb.train.txt is (with --ptb-vocab)')
    return p


def infer_options(arrays, source):
    """The sizes, cell and tying of the language model whose parameters ``arrays`` are."""
    from common.errors import CheckpointError
    shapes = [tuple(a.shape) for a in arrays]
    bad = CheckpointError(f"{source} holds arrays of shapes {shapes}, not the parameters of the book's Rnnlm or "
                          f"BetterRnnlm (embedding; Wx, Wh, b per layer; output layer): convert a language model's "
                          f"file; the book's other models load their file with their own load_params")
    if len(shapes[0]) != 2:
        raise bad
    V, D = shapes[0]
    layers, in_size, gates, H = 0, D, None, None
    while len(shapes) - (1 + 3 * layers) > 2:
        Wx, Wh, b = shapes[1 + 3 * layers:4 + 3 * layers]
        if (len(Wx), len(Wh), len(b)) != (2, 2, 1) or Wx[0] != in_size or not Wx[1] == Wh[1] == b[0] \
                or Wh[0] == 0 or Wh[1] % Wh[0] or (H is not None and (Wh[0], Wh[1] // Wh[0]) != (H, gates)):
            raise bad
        H, gates, in_size, layers = Wh[0], Wh[1] // Wh[0], Wh[0], layers + 1
    tail = shapes[1 + 3 * layers:]
    if layers == 0 or gates not in CELLS or tail not in ([(V,)], [(H, V), (V,)]):
        raise bad
    tied = len(tail) == 1 or (D == H and bool((arrays[-2] == arrays[0].T).all()))
    return dict(vocab_size=V, wordvec_size=D, hidden_size=H, num_layers=layers, cell=CELLS[gates],
                tie_weights=tied)


def build_model(options, kind, dropout_ratio, source):
    """A BetterRnnlm or Rnnlm of ``options``; ``kind`` as --model."""
    from common.errors import CheckpointError
    from ch_gru.better_rnnlm import BetterRnnlm
    from ch_gru.rnnlm import Rnnlm
    fits_better = options['num_layers'] == 2 and options['tie_weights']
    if kind == 'auto':
        kind = 'better_rnnlm' if fits_better else 'rnnlm'
    if kind == 'better_rnnlm' and not fits_better:
        raise CheckpointError(f"{source} holds a {options['num_layers']}-layer {options['cell']} model "
                              f"{'with' if options['tie_weights'] else 'without'} weight tying, not a BetterRnnlm "
                              f"(2 layers, tied): pass --model rnnlm")
    V, D, H = options['vocab_size'], options['wordvec_size'], options['hidden_size']
    if kind == 'better_rnnlm':
        return BetterRnnlm(V, D, H, 0.5 if dropout_ratio is None else dropout_ratio, cell=options['cell'])
    return Rnnlm(V, D, H, options['num_layers'], 0.0 if dropout_ratio is None else dropout_ratio,
                 cell=options['cell'], tie_weights=options['tie_weights'])


def ptb_vocab(vocab_size, data_dir):
    """The PTB words in id order; ConfigError when the model has another vocabulary size."""
    from common.errors import ConfigError
    from dataset import ptb
    _, id_to_word = ptb.load_vocab(data_dir)
    if len(id_to_word) != vocab_size:
        raise ConfigError(f"the PTB vocabulary has {len(id_to_word)} words but the model has {vocab_size}: "
                          f"leave out --ptb-vocab for a model of another corpus")
    return [id_to_word[i] for i in range(vocab_size)]


def read_book_file(path):
    """The arrays of the book's file; a file of this framework is a clear error."""
    from common.errors import CheckpointError
    from common.run import book_pickle
    if os.path.isfile(path) and not book_pickle.is_pickle(path):
        with open(path, 'rb') as f:
            if f.read(2) == b'PK':
                raise CheckpointError(f"{path} is already a file of this framework (an .npz archive), not the "
                                      f"book's pickle: nothing to convert; load it as it is")
    return book_pickle.load(path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = args.out or os.path.splitext(args.book_file)[0] + '.npz'
    if os.path.abspath(out) == os.path.abspath(args.book_file):
        from common.errors import ConfigError
        raise ConfigError(f"the output {out} would replace the book's file: name another output file")
    select_backend(False)
    arrays = read_book_file(args.book_file)
    model = build_model(infer_options(arrays, args.book_file), args.model, args.dropout_ratio, args.book_file)
    vocab = ptb_vocab(model.config['vocab_size'], args.data_dir) if args.ptb_vocab else None
    model.set_params_from_book(arrays, source=args.book_file)
    model.save_params(out, vocab=vocab, meta={'converted_from': os.path.basename(args.book_file)})
    print(f"{out}: {model.describe()}, {model.param_count():,} parameters, from {args.book_file}")
    return 0


if __name__ == '__main__':
    sys.exit(run(main))

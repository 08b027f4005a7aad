"""Vanishing gradients (the book's chapter 6): ‖∂L/∂h_t‖ against t for an RNN, an LSTM and a GRU.

    python scripts/plot_gradient_flow.py                            # docs/gradient_flow.png's settings
    python scripts/plot_gradient_flow.py --train-iters 0 --out flow.png   # random initialisation only
    python scripts/plot_gradient_flow.py --hidden-size 200 --window 80 --gpu

Three one-layer word models of the same size (ch_gru.rnnlm.Rnnlm with
cell rnn, lstm, gru; the models' own random initialisation, --seed) read
--windows windows of --window words of PTB's ptb.valid.txt. L is the
cross-entropy of the word after each window, predicted from the last state;
‖∂L/∂h_t‖ comes from real backward passes, exactly: the window is split at t
into two stateful calls and the second call's backward leaves the gradient
with respect to its initial state h_t (ch_gru/figures.py). The norm is each
window's own, averaged over the windows. For the LSTM the cell state's
‖∂L/∂c_t‖ is drawn dashed. With --train-iters N > 0 each model then trains N
Adam steps on ptb.test.txt (vocabulary from that file) and a second panel
shows the same after training. Prints the norms at t = 0 relative to the last
step, writes --out (PNG).
"""
import os
import sys

from common.run.cli import (ArgumentParser, HelpFormatter, check_output_dir, nonnegative_int, positive_float,
                            positive_int, run, select_backend)

CELLS = ('rnn', 'lstm', 'gru')
NAMES = {'rnn': 'RNN', 'lstm': 'LSTM', 'gru': 'GRU'}


def cells(text):
    import argparse
    names = [c.strip() for c in text.split(',') if c.strip()]
    bad = [c for c in names if c not in CELLS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {', '.join(CELLS)}")
    return names


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    p.add_argument('--out', default='gradient_flow.png', help='the PNG to write')
    p.add_argument('--data-dir', help='directory holding ptb.valid.txt and ptb.test.txt (directly or in ptb/); '
                   'default: $DLFS_DATA_DIR, then the download cache')
    p.add_argument('--cells', type=cells, default=list(CELLS), help='the cells to compare, e.g. rnn,gru')
    p.add_argument('--hidden-size', type=positive_int, default=64, help='hidden size (and embedding size)')
    p.add_argument('--window', type=positive_int, default=40, help='words per window: the steps t = 0..T-1')
    p.add_argument('--windows', type=positive_int, default=16, help='windows to average over')
    p.add_argument('--train-iters', type=nonnegative_int, default=60,
                   help='Adam steps of training before the second panel (0: only the random initialisation)')
    p.add_argument('--batch-size', type=positive_int, default=20, help='batch size of that training')
    p.add_argument('--time-size', type=positive_int, default=35, help='truncated BPTT length of that training')
    p.add_argument('--lr', type=positive_float, default=0.005, help='Adam learning rate of that training')
    p.add_argument('--seed', type=int, default=0, help='seed of the weights and of the windows')
    p.add_argument('--gpu', action='store_true', help='run on CUDA through CuPy')
    return p


def panels(args, train, valid, vocab_size):
    """{'panel title': {'RNN': norms, 'LSTM': ..., 'LSTM (c)': ...}}, and the models' descriptions."""
    import numpy
    from ch_gru import figures
    from ch_gru.rnnlm import Rnnlm
    xs, targets = figures.windows(valid, args.windows, args.window, seed=args.seed)
    H = args.hidden_size
    init, trained = {}, {}
    for cell in args.cells:
        numpy.random.seed(args.seed)
        model = Rnnlm(vocab_size, H, H, num_layers=1, dropout_ratio=0.0, cell=cell, tie_weights=False)
        init.update(named(cell, figures.state_gradient_norms(model, xs, targets)))
        if args.train_iters:
            figures.train_briefly(model, train, args.train_iters, args.batch_size, args.time_size, args.lr)
            trained.update(named(cell, figures.state_gradient_norms(model, xs, targets)))
    out = {'at random initialisation': init}
    if trained:
        out[f'after {args.train_iters} Adam steps on ptb.test.txt'] = trained
    return out


def named(cell, norms):
    """The one layer's norms by line label: 'GRU', or 'LSTM' and 'LSTM (c)'."""
    lines = {NAMES[cell]: norms['h'][0]}
    if 'c' in norms:
        lines[f'{NAMES[cell]} (c)'] = norms['c'][0]
    return lines


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_output_dir(os.path.dirname(os.path.abspath(args.out)), '--out')
    backend = select_backend(args.gpu)
    from common.run.plotting import gradient_flow_plot
    from dataset import ptb
    (train, valid), word_to_id, _ = ptb.load_files(ptb.path('test', args.data_dir), ptb.path('valid', args.data_dir))
    figure = panels(args, train, valid, len(word_to_id))
    for panel, lines in figure.items():
        ratios = ', '.join(f'{label} {norms[0] / norms[-1]:.2g}' for label, norms in lines.items())
        print(f'{panel}: ‖∂L/∂h_0‖ / ‖∂L/∂h_{args.window - 1}‖: {ratios}')
    title = (f'gradient reaching back from the loss: one-layer word models, H = {args.hidden_size}, '
             f"{args.windows} windows of PTB valid ({'CuPy' if backend.GPU else 'NumPy'})")
    print(f'wrote {gradient_flow_plot(figure, args.out, title)}')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))

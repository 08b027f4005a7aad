"""Sample text from a model trained by train_char_rnnlm.py or train_better_rnnlm.py.

    python scripts/generate_text.py runs/char_rnnlm/CharRnnlm.npz --prime 'ROMEO:' --length 500
    python scripts/generate_text.py runs/char_rnnlm/CharRnnlm.npz --temperature 0.5 --top-k 10 --seed 1
    python scripts/generate_text.py runs/better_rnnlm/BetterRnnlm.npz --prime 'the company' --skip '<unk>'

The model file holds the parameters, the model's options and the vocabulary.
The prime is fed once; every further token is one step (T = 1) of the
stateful recurrent layers. Models trained with --sentences start every sample
at <bos> and stop at <eos>; samples that stop at the end token take one line
each, others are separated by a line '----'.
"""
import argparse
import sys

from common.run.cli import ArgumentParser, HelpFormatter, nonnegative_int, positive_int, run, select_backend


def temperature(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not value >= 0 or value == float('inf'):
        raise argparse.ArgumentTypeError(f'{text} is not a finite number >= 0')
    return value


def build_parser():
    p = ArgumentParser(description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    p.add_argument('model', help='model file (.npz) written by a training script')
    p.add_argument('--prime', default='',
                   help='text to start from (words for word models); default: a line start')
    p.add_argument('--length', type=nonnegative_int, default=500, help='tokens to generate per sample at most')
    p.add_argument('--samples', type=positive_int, default=1, help='how many samples')
    p.add_argument('--temperature', type=temperature, default=1.0,
                   help='divide the scores by this before the softmax; 0: always the most likely token')
    p.add_argument('--top-k', type=positive_int, default=None, help='draw only from the k most likely tokens')
    p.add_argument('--skip', action='append', default=[], metavar='TOKEN',
                   help='never generate this token (repeatable), e.g. --skip "<unk>"')
    end = p.add_mutually_exclusive_group()
    end.add_argument('--stop-at-end', dest='stop_at_end', action='store_true', default=None,
                     help='stop a sample at the end token (<eos>); the default for sentence-mode models')
    end.add_argument('--no-stop-at-end', dest='stop_at_end', action='store_false',
                     help='generate --length tokens even past the end token')
    p.add_argument('--seed', type=int, default=None, help='random seed of the draws')
    p.add_argument('--gpu', action='store_true', help='run on CUDA through CuPy')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    select_backend(args.gpu)
    import numpy
    from ch_gru.generate import TextGenerator
    generator = TextGenerator.load(args.model)
    _, end_id = generator.check_options(args.temperature, args.top_k, args.skip, args.stop_at_end)
    rng = numpy.random.default_rng(args.seed)
    for i in range(args.samples):
        text = generator.sample(args.prime, args.length, args.temperature, args.top_k, skip=args.skip,
                                stop_at_end=args.stop_at_end, rng=rng)
        if i and end_id is None:             # samples of several lines: a separator line between them
            print('\n----')
        print(text, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(run(main))

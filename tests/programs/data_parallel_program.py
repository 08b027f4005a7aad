"""Train a tiny Rnnlm through train_with_validation, alone or as one of the
ranks of ``mpiexec -n K``; rank 0 writes what the tests compare.

    python tests/programs/data_parallel_program.py OUT_DIR [--resume] [--epochs N] [--interrupt-at N] ...

Writes OUT_DIR/result.json (valid and test perplexity, the largest difference
between any rank's parameters and rank 0's, the perplexity of the initial
model) and OUT_DIR/params.npz; the run's checkpoint is OUT_DIR/checkpoint.npz."""
import argparse
import json
import os
import sys
import time

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))   # the checkout

from common.parallel import communicator  # noqa: E402
from common.run.checkpoint import load_checkpoint  # noqa: E402
from common.run.settings import TrainSettings  # noqa: E402


def corpus(n, seed):
    rng = numpy.random.RandomState(seed)
    return (rng.zipf(1.5, n) % 40).astype(numpy.int64)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('out')
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--dropout', type=float, default=0.5)
    p.add_argument('--resume', action='store_true')
    p.add_argument('--interrupt-at', type=int, default=0, help='stop as Ctrl-C does after this many iterations')
    p.add_argument('--raise-on-rank', type=int, default=-1, help='this rank raises at iteration 3')
    p.add_argument('--user-error', action='store_true', help='... a DataError (bad input) instead of a RuntimeError')
    p.add_argument('--sleep', type=float, default=0, help='seconds to sleep in each iteration')
    args = p.parse_args(argv)
    from common import backend
    from ch_gru.rnnlm import Rnnlm
    from common.optimizer import SGD
    from common import util
    from common.parallel import steps as data_parallel
    from common.errors import DataError
    from common.run.parts import CtrlC
    from common.run.loop import train_with_validation
    comm = communicator.world()
    if comm.size > 1:
        print(f'data-parallel: {comm.describe()}', flush=True)
    backend.seed(3)
    model = Rnnlm(40, 8, 8, num_layers=2, dropout_ratio=args.dropout)
    optimizer = SGD(1.0)
    s = TrainSettings(max_epoch=args.epochs, batch_size=4, time_size=5, max_grad=1.0, eval_interval=0,
                      eval_batch_size=4, out_dir=args.out, save_path=os.path.join(args.out, 'model.npz'),
                      checkpoint_path=os.path.join(args.out, 'checkpoint.npz'))
    resume = load_checkpoint(s.checkpoint_path) if args.resume else None
    from common.trainer import RnnlmTrainer
    valid = corpus(121, 2)
    if comm.size > 1:
        first_ppl = data_parallel.eval_perplexity_ranks(comm, model, valid, 4, 5)
    else:
        first_ppl = util.eval_perplexity(model, valid, 4, 5)
    model.reset_state()

    def misbehave(trainer):                      # a gradient step: runs on every rank, every iteration
        time.sleep(args.sleep)
        if trainer.total_iters == 3 and comm.rank == args.raise_on_rank:
            raise (DataError if args.user_error else RuntimeError)('failing on purpose')
        if args.interrupt_at and trainer.total_iters + 1 == args.interrupt_at:
            for part in trainer.parts:           # rank 0's alone: the other ranks follow it
                if isinstance(part, CtrlC):
                    part.requested = True

    trainer = RnnlmTrainer(model, optimizer, grad_steps=[misbehave])
    result = train_with_validation(model, optimizer, (corpus(250, 1), valid, corpus(121, 3)), s,
                                   trainer=trainer, resume=resume)
    params = [backend.asnumpy(p) for p in model.params]
    gathered = comm.comm.gather(params, root=0) if comm.size > 1 else [params]
    if comm.is_root:
        spread = max(float(numpy.abs(q - p).max()) for other in gathered for p, q in zip(params, other))
        numpy.savez(os.path.join(args.out, 'params.npz'), *params)
        with open(os.path.join(args.out, 'result.json'), 'w') as f:
            json.dump({'valid': result['history']['valid'], 'test': result['test_ppl'], 'spread': spread,
                       'size': comm.size, 'first_ppl': first_ppl, 'interrupted': result['interrupted']}, f)
    return 0


if __name__ == '__main__':
    from common.run.cli import run
    sys.exit(run(main))

"""Data-parallel throughput on this machine: 1 process x 2 threads against
2 processes x 1 thread (mpiexec -n 2) (and, for reference, 1 process x 1 thread
and 2 processes x 2 threads, twice the threads the 2 cores have), and the time
of the gradient all-reduce per step.

    python scripts/bench_mpi.py [--iters 8] [--model book|small] [--json docs/bench-mpi.json]

All runs train the same global batch (20 rows x 35 steps, dropout 0.5, clipping 0.25;
``--model book``: vocabulary 10,000, D = H = 650; ``small``: vocabulary 6,022,
D = H = 64, the model of a quick run on PTB files) on a synthetic corpus through
RnnlmTrainer with the data-parallel parts, one warm-up epoch and one timed
epoch of ``--iters`` iterations each. The 2-process run also times its
gradient step (pack, all-reduce, unpack; it includes waiting for the slower
rank) and, after a barrier, the all-reduce of the flat buffer alone.
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for both: a user's machine does not set them, and
they hold OpenBLAS to a slower kernel.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import support
from common.run.cli import ArgumentParser

sys.path.insert(0, support.ROOT)


#: --model: (vocabulary, D = H).
MODELS = {'book': (10000, 650), 'small': (6022, 64), 'tiny': (100, 16)}


def worker(iters, model_name):
    import numpy
    from common import backend
    from common.parallel import communicator
    from common.parallel.steps import AllReduceGrads, AverageLoss, FollowRoot, split_rows
    from common.optimizer import SGD
    from common.trainer import RnnlmTrainer
    from ch_gru.better_rnnlm import BetterRnnlm

    comm = communicator.world()
    backend.seed(0)
    vocab, size = MODELS[model_name]
    model = BetterRnnlm(vocab, size, size, 0.5)
    corpus = numpy.random.randint(0, vocab, 20 * 35 * iters + 1)
    reduce_seconds = []

    class TimedAllReduce(AllReduceGrads):
        def __call__(self, trainer):
            start = time.perf_counter()
            super().__call__(trainer)
            reduce_seconds.append(time.perf_counter() - start)

    parallel = comm.size > 1
    steps = [TimedAllReduce(comm)] if parallel else []
    parts = [AverageLoss(comm), FollowRoot(comm)] if parallel else []
    trainer = RnnlmTrainer(model, SGD(1.0), parts=parts, grad_steps=steps)
    split_rows(comm, trainer, 20, 20)
    times = []
    for _ in range(2):                     # warm-up epoch, timed epoch
        reduce_seconds.clear()
        start = time.perf_counter()
        trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=20, time_size=35, max_grad=0.25,
                    eval_interval=0)
        times.append(time.perf_counter() - start)
    out = {'processes': comm.size, 'step_s': times[-1] / iters, 'tokens_per_s': 20 * 35 * iters / times[-1],
           'params': model.param_count()}
    if parallel:
        out['grad_step_s'] = float(numpy.median(reduce_seconds))
        flat = steps[0].bucket.flat
        alone = []
        for _ in range(10):
            comm.comm.Barrier()
            start = time.perf_counter()
            comm.allreduce_mean_(flat)
            alone.append(time.perf_counter() - start)
        out['allreduce_alone_s'] = float(numpy.median(alone))
        out['bytes'] = int(flat.nbytes)
    if comm.is_root:
        print(json.dumps(out), flush=True)


def run(cmd, threads):
    env = support.child_env(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    for name in ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'):
        env.pop(name, None)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return support.last_json(r.stdout)


def main():
    p = ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--iters', type=int, default=8, help='timed iterations per run')
    p.add_argument('--json', help='write the figures here')
    p.add_argument('--model', choices=sorted(MODELS), default='book',
                   help='book: BetterRnnlm of the book (D = H = 650); small: D = H = 64, vocabulary 6,022; '
                        'tiny: a toy (checks the script runs)')
    p.add_argument('--tiny', action='store_const', const='tiny', dest='model', help='the same as --model tiny')
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.iters, args.model)
    me = [sys.executable, os.path.abspath(__file__), '--worker', '--iters', str(args.iters), '--model', args.model]
    load = os.getloadavg()
    one = run(me, 2)
    two = run(['mpiexec', '-n', '2'] + me, 1)
    single = run(me, 1)
    crowded = run(['mpiexec', '-n', '2'] + me, 2)
    info = support.machine()
    result = {'cpu': info['cpu'], 'cores': info['cores'], 'blas': info['blas'], 'load_before': load, 'load_after': os.getloadavg(),
              'iters': args.iters, 'model': args.model, 'one_process_2_threads': one, 'two_processes_1_thread': two,
              'one_process_1_thread': single, 'two_processes_2_threads': crowded,
              'speedup': one['step_s'] / two['step_s'], 'command': 'python scripts/bench_mpi.py ' +
              ' '.join(sys.argv[1:])}
    print(f"{result['cpu']}, {result['cores']} cores, load average {load[0]:.2f} before, "
          f"{result['load_after'][0]:.2f} after")
    print(f"1 process  x 2 threads: {one['step_s'] * 1e3:7.1f} ms/step  {one['tokens_per_s']:7.0f} tokens/s")
    print(f"2 processes x 1 thread: {two['step_s'] * 1e3:7.1f} ms/step  {two['tokens_per_s']:7.0f} tokens/s "
          f"({result['speedup']:.2f}x)")
    print(f"1 process  x 1 thread:  {single['step_s'] * 1e3:7.1f} ms/step  {single['tokens_per_s']:7.0f} tokens/s")
    print(f"2 processes x 2 threads: {crowded['step_s'] * 1e3:6.1f} ms/step  {crowded['tokens_per_s']:7.0f} tokens/s "
          f"(4 threads on {result['cores']} cores)")
    print(f"gradient step (pack, all-reduce of {two['bytes'] / 1e6:.1f} MB, unpack): "
          f"{two['grad_step_s'] * 1e3:.1f} ms; the all-reduce alone after a barrier: "
          f"{two['allreduce_alone_s'] * 1e3:.1f} ms")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()

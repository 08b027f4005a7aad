"""The training script stopped for real (SIGKILL, Ctrl-C) and resumed: the
run ends with the parameters of a run that never stopped, bit for bit."""
import os
import random
import re
import signal
import time

import numpy as np
import pytest

from common.run.fileio import load_npz
from helpers import script
from helpers.processes import run_python, start_python

SCRIPT = script('train_better_rnnlm.py')
EPOCHS = 3
ITERS = 199          # 10000 training tokens // (5 x 10)


def args(shared_data, out_dir, *extra):
    """A tiny GRU on PTB's character file (50 symbols), 3 epochs of 199 iterations."""
    ptb = os.path.join(shared_data, 'ptb')
    return ['--train-file', os.path.join(ptb, 'ptb.char.valid.txt'),
            '--valid-file', os.path.join(ptb, 'ptb.char.test.txt'), '--test-file', os.path.join(ptb, 'ptb.char.test.txt'),
            '--max-train-tokens', '10000', '--max-eval-tokens', '600', '--wordvec-size', '16', '--hidden-size', '16',
            '--batch-size', '5', '--time-size', '10', '--max-epoch', str(EPOCHS), '--eval-interval', '20',
            '--seed', '3', '--out-dir', str(out_dir), *extra]


def start(argv, gpu=False):
    return start_python(SCRIPT, {'DLFS_GPU': '1'} if gpu else {}, *argv, fake_cupy=gpu)


def finish(argv, gpu=False):
    r = run_python(SCRIPT, {'DLFS_GPU': '1'} if gpu else {}, *argv, fake_cupy=gpu)
    assert r.returncode == 0, r.stderr
    return r.stdout


def read_until(proc, predicate):
    """Read the child's stdout line by line until ``predicate(line)``."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if predicate(line):
            return lines
    raise AssertionError('the run ended before the awaited line:\n' + ''.join(lines) + proc.stderr.read())


def final_arrays(out_dir):
    """Final and best parameters from the checkpoint, and the best-parameter file."""
    ck, _ = load_npz(os.path.join(out_dir, 'checkpoint.npz'))
    best, _ = load_npz(os.path.join(out_dir, 'BetterRnnlm.npz'))
    arrays = {k: v for k, v in ck.items() if k.startswith(('param_', 'best_'))}
    arrays.update({'file_' + k: v for k, v in best.items()})
    return arrays


def assert_identical(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope='module')
def reference(shared_data, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp('reference')
    finish(args(shared_data, out))
    return final_arrays(out)


def test_sigkill_at_a_random_point_then_resume_is_bit_identical(reference, shared_data, tmp_path):
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    done = rnd.randint(1, EPOCHS - 1)            # epochs finished before the kill
    reports = rnd.randint(0, 5)                  # report lines of the next epoch still read (of 10)
    proc = start(args(shared_data, tmp_path))
    read_until(proc, lambda line: line.startswith(f'| epoch {done} | train'))
    if reports:
        read_until(proc, lambda line: line.startswith(f'| epoch {done + 1} | iter {20 * (reports - 1) + 1} /'))
    time.sleep(rnd.uniform(0, 0.01))
    proc.kill()                                  # SIGKILL: no handler, no cleanup
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f'seed {seed}'

    out = finish(['--resume', str(tmp_path / 'checkpoint.npz')])
    # The child runs on while the kill is on its way: it may have ended one more epoch, never the run.
    resumed = int(re.search(r'resumed from .*checkpoint.npz: (\d+) epochs done, lr ', out).group(1))
    assert done <= resumed < EPOCHS, f'seed {seed}'
    assert_identical(final_arrays(tmp_path), reference)


def test_ctrl_c_saves_mid_epoch_evaluates_exits_130_and_resumes_bit_identical(reference, shared_data, tmp_path):
    proc = start(args(shared_data, tmp_path))
    read_until(proc, lambda line: line.startswith('| epoch 2 | iter 21 /'))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert 'Traceback' not in err
    ck = str(tmp_path / 'checkpoint.npz')
    lines = out.splitlines()
    stop = next(line for line in lines if line.startswith('-- stopped by Ctrl-C after iteration '))
    iteration = int(stop.split()[6])
    assert 21 <= iteration < ITERS and stop.endswith(f' of epoch 2: checkpoint in {ck}, continue with --resume {ck}')
    assert lines[lines.index(stop) + 1].startswith('| end | best valid ppl ')        # still tested
    assert not any(line.startswith('| epoch 2 | train') for line in lines)           # epoch 2 never ended

    out = finish(['--resume', ck])
    assert f'resumed from {ck}: 1 epochs done, {iteration} iterations into epoch 2' in out
    assert_identical(final_arrays(tmp_path), reference)


def test_ctrl_c_and_resume_on_the_gpu_path(shared_data, tmp_path):
    """The same through the stand-in CuPy: hidden states and parameters go
    device -> file -> device without mixing host and device arrays."""
    proc = start(args(shared_data, tmp_path, '--gpu', '--max-epoch', '2'), gpu=True)
    head = read_until(proc, lambda line: line.startswith('| epoch 1 | iter 41 /'))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert 'CuPy (GPU)' in ''.join(head) and '-- stopped by Ctrl-C after iteration' in out
    out = finish(['--resume', str(tmp_path / 'checkpoint.npz'), '--gpu'], gpu=True)
    assert 'iterations into epoch 1' in out and '| epoch 2 | train' in out and '| end |' in out


def random_words(path, tokens, seed):
    rnd = random.Random(seed)
    words = [f'w{i}' for i in range(40)]
    with open(path, 'w') as f:
        for _ in range(tokens // 20):
            f.write(' '.join(rnd.choice(words) for _ in range(20)) + '\n')
    return str(path)


def test_regularised_recipe_ctrl_c_and_resume_is_bit_identical(tmp_path):
    """The same with every AWD-LSTM piece on: the masks' generator, the variable window lengths and
    NT-ASGD's average all come back from the checkpoint. Random words: nothing to learn, so valid gets
    worse and averaging starts by epoch 3; the run is cut in the middle of epoch 4."""
    train, valid = random_words(tmp_path / 'train.txt', 8000, 1), random_words(tmp_path / 'valid.txt', 800, 2)

    def argv(out):
        return ['--train-file', train, '--valid-file', valid, '--test-file', valid, '--wordvec-size', '16',
                '--hidden-size', '16', '--batch-size', '5', '--time-size', '10', '--max-epoch', '4',
                '--eval-interval', '20', '--seed', '3', '--out-dir', str(out), '--recipe', 'regularised',
                '--lr', '5', '--asgd-nonmono', '1']
    out = finish(argv(tmp_path / 'ref'))
    assert 'averaging the weights (NT-ASGD) from now on' in out.split('| epoch 4 |')[0]
    reference = final_arrays(tmp_path / 'ref')
    ref_ck, ref_meta = load_npz(os.path.join(tmp_path / 'ref', 'checkpoint.npz'))
    proc = start(argv(tmp_path / 'cut'))
    read_until(proc, lambda line: line.startswith('| epoch 4 | iter 21 /'))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    out = finish(['--resume', str(tmp_path / 'cut' / 'checkpoint.npz')])
    assert 'iterations into epoch 4' in out
    assert_identical(final_arrays(tmp_path / 'cut'), reference)
    ck, meta = load_npz(os.path.join(tmp_path / 'cut', 'checkpoint.npz'))
    assert meta['optimizer'] == ref_meta['optimizer'] and meta['optimizer']['values']['averaging']
    avg = {k: v for k, v in ck.items() if k.startswith('optim_avg_')}
    assert avg and meta['optimizer']['values']['avg_count'] > 20
    assert_identical(avg, {k: v for k, v in ref_ck.items() if k.startswith('optim_avg_')})

"""scripts/train_better_rnnlm.py end to end on small slices of the real PTB files; stopped for real
(SIGKILL, Ctrl-C) and resumed, it ends with the parameters of a run that never stopped, bit for bit."""
import json
import os
import random
import re
import signal
import sys
import time

import numpy as np
import pytest

from common.run.fileio import load_npz
from helpers import script
from helpers.processes import run_python, start_python

SCRIPT = script('train_better_rnnlm.py')


def run_script(*args, env=None):
    return run_python(SCRIPT, env, *args, timeout=600)


def small_run_args(shared_data, out_dir, *extra):
    ptb = os.path.join(shared_data, 'ptb')
    return ['--train-file', os.path.join(ptb, 'ptb.valid.txt'), '--valid-file', os.path.join(ptb, 'ptb.test.txt'),
            '--test-file', os.path.join(ptb, 'ptb.test.txt'), '--max-train-tokens', '12000',
            '--max-eval-tokens', '4000', '--wordvec-size', '32', '--hidden-size', '32', '--batch-size', '10',
            '--time-size', '20', '--max-epoch', '2', '--eval-interval', '20', '--seed', '1',
            '--out-dir', str(out_dir), *extra]


def test_short_run_on_real_ptb_files(shared_data, tmp_path):
    r = run_script(*small_run_args(shared_data, tmp_path))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert '| epoch 1 | iter 1 / 59 |' in out and 'tok/s' in out
    epochs = [line for line in out.splitlines() if line.startswith('| epoch') and 'valid ppl' in line]
    assert len(epochs) == 2
    assert 'train ppl' in epochs[0] and 'lr 10' in epochs[0] and 'time' in epochs[0]
    records = [json.loads(line) for line in open(tmp_path / 'log.jsonl')]
    assert [r['event'] for r in records] == ['start', 'epoch', 'epoch', 'end']
    e1, e2, end = records[1], records[2], records[3]
    assert e2['valid_ppl'] < e1['valid_ppl'] < 6022          # it learns something in two epochs
    assert end['test_ppl'] == pytest.approx(min(e1['valid_ppl'], e2['valid_ppl']), rel=1e-6)  # valid == test file
    with open(tmp_path / 'perplexity.png', 'rb') as f:
        assert f.read(4) == b'\x89PNG'
    assert os.path.getsize(tmp_path / 'BetterRnnlm.npz') > 0


def test_learning_rate_is_divided_when_valid_gets_worse(shared_data, tmp_path):
    # A huge learning rate makes valid perplexity worse after the first epoch.
    r = run_script(*small_run_args(shared_data, tmp_path, '--lr', '400', '--max-epoch', '3', '--lr-decay', '4'))
    assert r.returncode == 0, r.stderr
    epochs = [json.loads(line) for line in open(tmp_path / 'log.jsonl') if '"epoch"' in line]
    for prev, cur in zip(epochs, epochs[1:]):
        best_before = min(e['valid_ppl'] for e in epochs[:epochs.index(cur)])
        expected = prev['lr'] if prev['valid_ppl'] <= best_before else prev['lr'] / 4
        assert cur['lr'] == pytest.approx(expected)


def test_help_documents_every_flag():
    r = run_script('--help')
    assert r.returncode == 0
    for flag in ('--data-dir', '--train-file', '--valid-file', '--test-file', '--cell', '--wordvec-size',
                 '--hidden-size', '--dropout', '--batch-size', '--time-size', '--lr', '--lr-decay',
                 '--max-epoch', '--max-grad', '--eval-interval', '--gpu', '--seed', '--save', '--out-dir', '--resume',
                 '--checkpoint', '--divergence-factor', '--max-divergences'):
        assert flag in r.stdout
    assert '(default: 10.0)' in r.stdout and '(default: 0.25)' in r.stdout


@pytest.mark.parametrize('args,message', [
    (['--lr', '-1'], 'argument --lr: -1 is not a positive number'),
    (['--dropout', '1.5'], 'argument --dropout: 1.5 is not in [0, 1)'),
    (['--batch-size', '0'], 'argument --batch-size: 0 is not a positive integer'),
    (['--train-file', '/nonexistent/train.txt', '--valid-file', '/nonexistent/v.txt',
      '--test-file', '/nonexistent/t.txt'], 'error: corpus file /nonexistent/train.txt does not exist'),
    (['--wordvec-size', '100', '--hidden-size', '200'], 'must equal --hidden-size'),
])
def test_user_mistakes_give_one_line(tmp_path, args, message):
    r = run_script(*args, '--out-dir', str(tmp_path))
    assert r.returncode == 2
    assert message in r.stderr
    assert 'Traceback' not in r.stderr


def test_recipe_book_is_the_scripts_own_defaults_and_regularised_sets_every_piece():
    sys.path.insert(0, os.path.dirname(SCRIPT))
    import train_better_rnnlm as script
    plain, _ = script.parse_recipe_args([])
    book, _ = script.parse_recipe_args(['--recipe', 'book'])
    assert {**vars(plain), 'recipe': None} == {**vars(book), 'recipe': None}
    assert script.regularisation_options(book) == __import__('ch_gru.rnnlm').rnnlm.REGULARISATION
    assert (book.asgd_nonmono, book.variable_bptt, book.lr_decay, book.cell) == (0, False, 4.0, 'gru')
    assert (book.weight_decay, book.asgd_restarts, book.asgd_latest) == (0.0, 0, 0.0)
    reg, _ = script.parse_recipe_args(['--recipe', 'regularised', '--weight-drop', '0.2'])
    assert reg.weight_drop == 0.2                          # an explicit flag wins
    assert (reg.locked_dropout, reg.embed_dropout, reg.ar_alpha, reg.tar_beta) == (True, 0.1, 2.0, 1.0)
    assert (reg.dropout_input, reg.dropout_hidden, reg.dropout_output) == (0.65, 0.3, 0.4)
    assert (reg.asgd_nonmono, reg.variable_bptt, reg.lr_decay, reg.cell, reg.lr) == (5, True, 1.0, 'lstm', 30.0)
    assert (reg.weight_decay, reg.asgd_restarts, reg.asgd_latest) == (1.2e-6, 0, 0.5)


def test_help_documents_the_recipe_and_every_piece():
    out = run_script('--help').stdout
    for flag in ('--recipe', '--locked-dropout', '--dropout-input', '--dropout-hidden', '--dropout-output',
                 '--embed-dropout', '--weight-drop', '--ar', '--tar', '--asgd-nonmono', '--asgd-restarts', '--asgd-latest',
                 '--weight-decay', '--variable-bptt'):
        assert flag in out
    assert 'AWD-LSTM' in out


def test_regularised_recipe_end_to_end(shared_data, tmp_path):
    r = run_script(*small_run_args(shared_data, tmp_path, '--recipe', 'regularised', '--max-epoch', '2'))
    assert r.returncode == 0, r.stderr
    assert 'locked_dropout=True' in r.stdout and "cell='lstm'" in r.stdout and '| end |' in r.stdout
    records = [json.loads(line) for line in open(tmp_path / 'log.jsonl')]
    epochs = [r for r in records if r['event'] == 'epoch']
    assert len(epochs) == 2 and epochs[1]['valid_ppl'] < epochs[0]['valid_ppl'] < 6022
    assert all(e['lr'] == 30.0 for e in epochs)              # lr_decay 1: the rate stays


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

"""scripts/plot_gradient_flow.py: tiny runs on PTB words, on NumPy and on the GPU path (the stand-in CuPy),
and one-line errors for bad arguments."""
import re

import pytest

from helpers import script
from helpers.images import read_png
from helpers.processes import run_python

SCRIPT = script('plot_gradient_flow.py')
TINY = ('--hidden-size', '8', '--window', '6', '--windows', '3', '--train-iters', '2', '--batch-size', '4',
        '--time-size', '5')


def test_a_tiny_run_draws_both_panels(tmp_path):
    out = tmp_path / 'figs' / 'flow.png'
    r = run_python(SCRIPT, None, *TINY, '--out', out)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('at random initialisation: ‖∂L/∂h_0‖ / ‖∂L/∂h_5‖: RNN ')
    assert lines[1].startswith('after 2 Adam steps on ptb.test.txt:')
    for label in ('RNN', 'LSTM', 'LSTM (c)', 'GRU'):
        assert re.search(rf'{re.escape(label)} [0-9.e+-]+', lines[0]), label
    assert lines[-1] == f'wrote {out}'
    image = read_png(out)
    assert image.shape[1] > 1.5 * image.shape[0]        # two panels


def test_the_gpu_path_runs(tmp_path):
    r = run_python(SCRIPT, None, *TINY, '--cells', 'gru,lstm', '--train-iters', '0', '--gpu',
                   '--out', tmp_path / 'flow.png', fake_cupy=True)
    assert r.returncode == 0, r.stderr
    assert 'GRU' in r.stdout and 'RNN' not in r.stdout and 'after' not in r.stdout
    read_png(tmp_path / 'flow.png')


@pytest.mark.parametrize('args,message', [
    (('--cells', 'gru,tree'), r"argument --cells: 'gru,tree' is not a comma-separated list of rnn, lstm, gru"),
    (('--window', '0'), r'argument --window: 0 is not a positive integer'),
    (('--window', '100000'), r'fewer than a window of 100000'),
    (('--train-iters', '100000'), r'need \d+ tokens, the corpus has \d+: train fewer iterations'),
    (('--data-dir', '/nonexistent'), r'data directory /nonexistent \(from --data-dir\) does not exist'),
])
def test_bad_arguments_are_one_line(tmp_path, args, message):
    r = run_python(SCRIPT, None, *TINY, '--out', tmp_path / 'x.png', *args, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith('error: ') and r.stderr.count('\n') == 1, r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert not (tmp_path / 'x.png').exists()


def test_an_unwritable_out_is_one_line(tmp_path):
    (tmp_path / 'a_file').write_text('')
    r = run_python(SCRIPT, None, '--out', tmp_path / 'a_file' / 'flow.png', timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1
    assert 'choose another --out' in r.stderr

"""scripts/plot_gates.py: a tiny GRU trained in the script, a model file as scripts/train_char_rnnlm.py
writes it, the GPU path (the stand-in CuPy), and one-line errors."""
import re

import numpy
import pytest

from helpers import script
from helpers.images import read_png
from helpers.processes import run_python

SCRIPT = script('plot_gates.py')
TINY = ('--hidden-size', '8', '--embed-size', '4', '--train-iters', '2', '--batch-size', '4', '--time-size', '8',
        '--length', '30', '--units', '4')


def test_a_tiny_model_trained_here(tmp_path):
    out = tmp_path / 'gates.png'
    r = run_python(SCRIPT, None, *TINY, '--out', out)
    assert r.returncode == 0, r.stderr
    passage = re.search(r"passage \(30 characters\): '(.*)'\n", r.stdout)
    assert passage and not passage.group(1).startswith('\\n'), r.stdout     # from a line start
    assert re.search(r'mean z 0\.\d+, mean r 0\.\d+; showing 4 of 8 units', r.stdout), r.stdout
    assert r.stdout.splitlines()[-1] == f'wrote {out}'
    image = read_png(out)
    assert image.shape[1] > image.shape[0]


def char_model_file(tmp_path, cell='gru'):
    """A character model file as scripts/train_char_rnnlm.py writes it."""
    from ch_gru.rnnlm import Rnnlm
    from dataset.chars import CharVocab
    vocab = CharVocab.build(['ROMEO: But soft, what light\n'])
    numpy.random.seed(0)
    model = Rnnlm(len(vocab), 4, 6, num_layers=2, dropout_ratio=0.0, cell=cell, tie_weights=False)
    return model.save_params(str(tmp_path / 'CharRnnlm.npz'), vocab=vocab.tokens, meta={'text': vocab.meta()})


def test_a_model_file_and_a_passage(tmp_path):
    path = char_model_file(tmp_path)
    r = run_python(SCRIPT, None, '--model-file', path, '--layer', '1', '--passage', 'ROMEO:\\nBut soft',
                   '--units', '3', '--out', tmp_path / 'g.png')
    assert r.returncode == 0, r.stderr
    assert "passage (15 characters): 'ROMEO:\\nBut soft'" in r.stdout
    assert 'showing 3 of 6 units' in r.stdout
    read_png(tmp_path / 'g.png')


def test_the_gpu_path_runs(tmp_path):
    path = char_model_file(tmp_path)
    r = run_python(SCRIPT, None, '--model-file', path, '--passage', 'what light', '--gpu', '--out',
                   tmp_path / 'g.png', fake_cupy=True)
    assert r.returncode == 0, r.stderr
    read_png(tmp_path / 'g.png')


@pytest.mark.parametrize('case,message', [
    ('lstm', r'layer 0 is a TimeLSTM, not a TimeGRU'),
    ('layer', r'the model has 2 recurrent layer\(s\): give a layer index below that'),
    ('passage', r"the passage"),
    ('not a model', r'is not a model file \(.npz\)'),
    ('units', r'argument --units: 0 is not a positive integer'),
])
def test_bad_input_is_one_line(tmp_path, case, message):
    path = char_model_file(tmp_path, cell='lstm' if case == 'lstm' else 'gru')
    args = {'lstm': ('--passage', 'soft'), 'layer': ('--passage', 'soft', '--layer', '2'),
            'passage': ('--passage', 'xyz'), 'not a model': ('--passage', 'soft'),
            'units': ('--units', '0')}[case]
    if case == 'not a model':
        path = tmp_path / 'log.jsonl'
        path.write_text('{}\n')
    r = run_python(SCRIPT, None, '--model-file', path, *args, '--out', tmp_path / 'g.png', timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith('error: ') and r.stderr.count('\n') == 1, r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert not (tmp_path / 'g.png').exists()

"""scripts/train_better_rnnlm.py end to end on a small slice of the real PTB files."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'scripts', 'train_better_rnnlm.py')


def run_script(*args, env=None):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env=dict(os.environ, **(env or {})))


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

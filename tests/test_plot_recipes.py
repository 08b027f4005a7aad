"""scripts/plot_recipes.py: curves from runs' log.jsonl files, a tiny --run of both recipes on PTB-mini, and
one-line errors."""
import json
import re

import pytest

from helpers import script
from helpers.images import read_png
from helpers.processes import run_python

SCRIPT = script('plot_recipes.py')


def run_log(folder, recipe, valid):
    folder.mkdir(parents=True)
    records = [dict(event='start', model='BetterRnnlm(...)', params=1, args={'recipe': recipe})]
    records += [dict(event='epoch', epoch=i + 1, train_ppl=v * 1.2, valid_ppl=v, train_seconds=10.0 * (i + 1))
                for i, v in enumerate(valid)]
    (folder / 'log.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    return folder


def test_two_logs(tmp_path):
    book = run_log(tmp_path / 'a', 'book', [900, 400, 300])
    reg = run_log(tmp_path / 'b', 'regularised', [700, 350, 250, 240])
    out = tmp_path / 'recipes.png'
    r = run_python(SCRIPT, None, book, reg / 'log.jsonl', '--out', out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['book: 3 epochs, best valid perplexity 300.00',
                                     'regularised: 4 epochs, best valid perplexity 240.00', f'wrote {out}']
    read_png(out)
    named = run_python(SCRIPT, None, book, reg, '--labels', 'GRU,AWD-LSTM', '--out', out)
    assert named.returncode == 0 and named.stdout.startswith('GRU: 3 epochs'), named.stderr


def test_a_tiny_run_of_both_recipes(tmp_path):
    r = run_python(SCRIPT, None, '--run', '--seconds', '1', '--hidden-size', '8', '--max-eval-tokens', '400',
                   '--work-dir', tmp_path / 'work', '--out', tmp_path / 'recipes.png', timeout=240)
    assert r.returncode == 0, r.stderr + r.stdout
    assert re.search(r'^\[book\] .*--recipe book .*--max-seconds 1', r.stdout, re.M)
    assert re.search(r'^\[regularised\] \| end \| best valid ppl', r.stdout, re.M), r.stdout
    assert re.search(r'^book: 1 epochs, best valid perplexity \d', r.stdout, re.M)
    assert re.search(r'^regularised: 1 epochs, best valid perplexity \d', r.stdout, re.M)
    assert (tmp_path / 'work' / 'regularised' / 'log.jsonl').exists()
    read_png(tmp_path / 'recipes.png')


@pytest.mark.parametrize('case,message', [
    ('nothing', r"give the runs' log.jsonl files, or --run"),
    ('both', r"give the runs' log.jsonl files, or --run"),
    ('missing', r'cannot read the run log .*missing/log.jsonl: No such file'),
    ('no epoch', r'holds no finished epoch'),
    ('same label', r"two runs have the label 'book': name them with --labels"),
    ('labels', r'--labels gives 1 label\(s\) for 2 run\(s\)'),
    ('seconds', r'argument --seconds: 0 is not a positive integer'),
])
def test_bad_input_is_one_line(tmp_path, case, message):
    book = run_log(tmp_path / 'a', 'book', [900])
    other = run_log(tmp_path / 'b', 'book', [800])
    empty = run_log(tmp_path / 'c', 'book', [])
    args = {'nothing': (), 'both': ('--run', book), 'missing': (book, tmp_path / 'missing' / 'log.jsonl'),
            'no epoch': (book, empty), 'same label': (book, other), 'labels': (book, other, '--labels', 'x'),
            'seconds': ('--run', '--seconds', '0')}[case]
    r = run_python(SCRIPT, None, *args, '--out', tmp_path / 'r.png', timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith('error: ') and r.stderr.count('\n') == 1, r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert not (tmp_path / 'r.png').exists()

"""scripts/train_char_rnnlm.py end to end on small slices of the real corpora, on NumPy and through the
stand-in CuPy, with scripts/generate_text.py sampling from the models it trains."""
import json
import os
import shutil
import signal

import pytest

from helpers import script
from helpers.processes import run_python, start_python

TRAIN = script('train_char_rnnlm.py')
GENERATE = script('generate_text.py')
SMALL = ['--max-chars', '12000', '--embed-size', '16', '--hidden-size', '32', '--batch-size', '8',
         '--time-size', '25', '--eval-batch-size', '8', '--seed', '1', '--sample', '80']


def run_script(script, *args, env=None):
    return run_python(script, env, *args)


def events(out_dir):
    return [json.loads(line) for line in open(os.path.join(out_dir, 'log.jsonl'))]


def test_shakespeare_run_then_generation(shared_data, tmp_path):
    out = tmp_path / 'run'
    r = run_script(TRAIN, '--data-dir', shared_data, *SMALL, '--max-epoch', '2', '--eval-interval', '20',
                   '--valid-interval', '25', '--out-dir', str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('data: Tiny Shakespeare, split 0.9/0.05/0.05: 12000 / 12000 / 12000 tokens, '
                               'vocabulary 65')
    assert 'model: Rnnlm(vocab_size=65, wordvec_size=16, hidden_size=32, num_layers=1' in lines[1]
    assert '7,889 parameters' in lines[1]          # 65·16 + 16·96 + 32·96 + 96 + 32·65 + 65
    report = next(line for line in lines if line.startswith('| epoch 1 | iter 21 / 59 |'))
    assert 'nats/char' in report and 'bpc' in report and 'ppl' in report
    interval = [line for line in lines if line.startswith('| iter ')]
    assert [int(line.split()[2]) for line in interval] == [25, 50, 59, 75, 100, 118]   # and each epoch's end
    assert all('valid loss' in line and 'train loss' in line for line in interval)
    epochs = [line for line in lines if line.startswith('| epoch') and 'valid loss' in line]
    assert len(epochs) == 2 and all('bpc' in e for e in epochs)
    log = events(out)
    assert [e['event'] for e in log] == ['start'] + ['eval'] * 3 + ['epoch'] + ['eval'] * 3 + ['epoch', 'end']
    e1, e2 = (e for e in log if e['event'] == 'epoch')
    assert e2['valid_ppl'] < e1['valid_ppl'] < 65               # it learns
    assert log[0]['params'] == 7889 and log[0]['vocab_size'] == 65
    for name in ('perplexity.png', 'curve.png'):
        assert (out / name).read_bytes()[:4] == b'\x89PNG'
    assert '-- sample (80 tokens, temperature 0.8):' in r.stdout

    model = str(out / 'CharRnnlm.npz')
    args = [model, '--prime', 'ROMEO:', '--length', '120', '--seed', '5', '--temperature', '0.9', '--top-k', '20']
    g1, g2 = run_script(GENERATE, *args), run_script(GENERATE, *args)
    assert g1.returncode == 0, g1.stderr
    assert g1.stdout == g2.stdout and g1.stdout.startswith('ROMEO:')
    assert len(g1.stdout) == len('ROMEO:') + 120 + 1
    g3 = run_script(GENERATE, model, '--prime', 'ROMEO@')
    assert g3.returncode == 2 and g3.stderr.count('\n') == 1
    assert "error: the prime has 1 character(s) not in the vocabulary ('@')" in g3.stderr


def test_ptb_characters_in_sentence_mode(shared_data, tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    ptb = os.path.join(shared_data, 'ptb')
    # ptb.char.train.txt is not available here: the valid file stands in for it
    shutil.copy(os.path.join(ptb, 'ptb.char.valid.txt'), data / 'ptb.char.train.txt')
    for name in ('ptb.char.valid.txt', 'ptb.char.test.txt'):
        shutil.copy(os.path.join(ptb, name), data / name)
    out = tmp_path / 'run'
    r = run_script(TRAIN, '--corpus', 'ptb-char', '--data-dir', str(data), '--sentences', *SMALL,
                   '--max-epoch', '1', '--optimizer', 'adagrad', '--lr', '0.05', '--eval-interval', '0',
                   '--out-dir', str(out), env={'DLFS_CACHE_DIR': str(tmp_path / 'cache')})
    assert r.returncode == 0, r.stderr
    assert 'data: PTB characters' in r.stdout and '(with <bos>, <eos>)' in r.stdout
    end = next(line for line in r.stdout.splitlines() if line.startswith('| end |'))
    assert 'test loss' in end and 'bpc' in end
    g = run_script(GENERATE, str(out / 'CharRnnlm.npz'), '--samples', '3', '--length', '300', '--seed', '2',
                   '--prime', 'the ')
    assert g.returncode == 0, g.stderr
    samples = g.stdout.splitlines()
    assert len(samples) == 3 and all(s.startswith('the ') for s in samples)
    assert not any('_' in s or '<eos>' in s or '<bos>' in s for s in samples)


def test_time_budget_stops_inside_the_first_epoch(shared_data, tmp_path):
    r = run_script(TRAIN, '--data-dir', shared_data, *SMALL, '--max-chars', '300000', '--max-seconds', '0.3',
                   '--eval-interval', '0', '--split', '0.9,0.1,0', '--out-dir', str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert 'time budget reached' in r.stdout
    epoch, end = [e for e in events(tmp_path) if e['event'] in ('epoch', 'end')]
    assert epoch['partial'] and epoch['iters'] < 300000 // (8 * 25)
    assert end['test_ppl'] is None and end['train_seconds'] == epoch['train_seconds']


def test_ctrl_c_exits_130_with_a_checkpoint_that_resumes(shared_data, tmp_path):
    """As test_train_better_rnnlm.py does for the word script: Ctrl-C inside an epoch
    saves the checkpoint and exits with status 130; --resume finishes the run."""
    argv = ['--data-dir', shared_data, *SMALL, '--max-chars', '100000', '--max-epoch', '2', '--eval-interval', '20',
            '--sample', '0', '--out-dir', str(tmp_path)]
    proc = start_python(TRAIN, {}, *argv)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith('| epoch 1 | iter 41 /'):
            break
    else:
        raise AssertionError('the run ended before the awaited line:\n' + ''.join(seen) + proc.stderr.read())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert 'Traceback' not in err
    ck = str(tmp_path / 'checkpoint.npz')
    stop = next(line for line in out.splitlines() if line.startswith('-- stopped by Ctrl-C after iteration '))
    assert stop.endswith(f' of epoch 1: checkpoint in {ck}, continue with --resume {ck}')
    iteration = int(stop.split()[6])

    r = run_script(TRAIN, '--resume', ck)
    assert r.returncode == 0, r.stderr
    assert f'resumed from {ck}: 0 epochs done, {iteration} iterations into epoch 1' in r.stdout
    assert [e['epoch'] for e in events(tmp_path) if e['event'] == 'epoch'][-2:] == [1, 2]


def test_char_scripts_on_the_gpu_path(shared_data, tmp_path):
    """Training and generation through the stand-in CuPy: no host/device
    mixing, and the same sample as on NumPy from the same file and seed."""
    out = tmp_path / 'gpu'
    r = run_python(TRAIN, {'DLFS_GPU': '1'}, '--gpu', '--data-dir', shared_data, *SMALL, '--max-epoch', '1',
                   '--valid-interval', '20', '--out-dir', str(out), fake_cupy=True)
    assert r.returncode == 0, r.stderr
    assert 'CuPy (GPU)' in r.stdout and '| end |' in r.stdout
    out_s = tmp_path / 'gpu_sentences'
    r = run_python(TRAIN, {'DLFS_GPU': '1'}, '--gpu', '--data-dir', shared_data, *SMALL, '--max-epoch', '1',
                   '--sentences', '--out-dir', str(out_s), fake_cupy=True)
    assert r.returncode == 0, r.stderr
    for model in (out / 'CharRnnlm.npz', out_s / 'CharRnnlm.npz'):
        args = [str(model), '--length', '60', '--seed', '3', '--top-k', '10', '--samples', '2']
        gpu = run_python(GENERATE, {'DLFS_GPU': '1'}, '--gpu', *args, fake_cupy=True)
        cpu = run_python(GENERATE, {}, *args)
        assert gpu.returncode == 0, gpu.stderr
        assert cpu.returncode == 0, cpu.stderr
        assert gpu.stdout == cpu.stdout and gpu.stdout.strip()


def test_help_lists_every_flag():
    r = run_script(TRAIN, '--help')
    assert r.returncode == 0
    for flag in ('--corpus', '--format', '--split', '--sentences', '--data-dir', '--max-chars', '--cell', '--layers',
                 '--embed-size', '--hidden-size', '--dropout', '--tie', '--optimizer', '--lr', '--lr-decay',
                 '--lr-epoch-factor', '--max-grad', '--batch-size', '--time-size', '--max-epoch', '--max-seconds', '--eval-interval',
                 '--valid-interval', '--eval-batch-size', '--seed', '--gpu', '--out-dir', '--save', '--sample',
                 '--reset-after', '--dtype', '--processes'):
        assert flag in r.stdout, flag
    g = run_script(GENERATE, '--help')
    for flag in ('--prime', '--length', '--samples', '--temperature', '--top-k', '--skip', '--stop-at-end',
                 '--seed', '--gpu'):
        assert flag in g.stdout, flag


@pytest.mark.parametrize('args,message', [
    (['--tie', '--embed-size', '16', '--hidden-size', '32'], '--tie needs --embed-size (16) equal to --hidden-size'),
    (['--split', '0.9,0.2,0'], 'summing to 1'),
    (['--split', '0.9,x,0'], "'0.9,x,0' is not three numbers"),
    (['--format', 'ptb-char'], '--format goes with --corpus PATH'),
    (['--corpus', '/nonexistent/corpus.txt'], 'error: corpus file /nonexistent/corpus.txt does not exist'),
    (['--optimizer', 'rmsprop'], "invalid choice: 'rmsprop'"),
    (['--cell', 'lstm', '--reset-after'], "reset_after is an option of the GRU, not of cell 'lstm'"),
])
def test_user_mistakes_give_one_line(tmp_path, args, message):
    r = run_script(TRAIN, *args, '--out-dir', str(tmp_path))
    assert r.returncode == 2
    assert message in r.stderr and 'Traceback' not in r.stderr


def test_a_small_file_of_sentences_at_default_sizes(shared_data, tmp_path):
    """The hackathon's case: 60 lines of sentences, --sentences --optimizer
    adagrad and every size at its default. Each split is far shorter than
    --batch-size 64 x --time-size 64 tokens, which only continuous text
    needs: the run trains, reports and samples sentences."""
    with open(os.path.join(shared_data, 'ptb', 'ptb.valid.txt')) as f:
        lines = [' '.join(line.split()[:6]) for _, line in zip(range(60), f)]
    corpus = tmp_path / 'sentences.txt'
    corpus.write_text('\n'.join(lines) + '\n')
    out = tmp_path / 'run'
    r = run_script(TRAIN, '--corpus', str(corpus), '--sentences', '--optimizer', 'adagrad', '--max-epoch', '2',
                   '--seed', '1', '--out-dir', str(out))
    assert r.returncode == 0, r.stderr
    lines_out = r.stdout.splitlines()
    counts = lines_out[0].split(' by lines: ')[1].split(' tokens')[0].split(' / ')
    assert [int(c) < 64 * 64 + 1 for c in counts] == [True] * 3 and int(counts[2]) < 32 * 64 + 1
    assert 'hidden_size=256' in lines_out[1]
    epochs = [line for line in lines_out if line.startswith('| epoch') and 'valid loss' in line]
    assert len(epochs) == 2
    assert any(line.startswith('| end |') and 'test loss' in line for line in lines_out)
    sample = lines_out[lines_out.index('-- sample (300 tokens, temperature 0.8):') + 1:]
    assert len(sample) == 1 and sample[0] and '<eos>' not in sample[0]   # one sentence, ended at <eos>
    g = run_script(GENERATE, str(out / 'CharRnnlm.npz'), '--samples', '3', '--length', '100', '--seed', '2')
    assert g.returncode == 0, g.stderr
    assert len(g.stdout.splitlines()) == 3


def test_a_reset_after_gru_trains_and_its_model_file_goes_to_pytorch(shared_data, tmp_path):
    torch = pytest.importorskip('torch')
    out = tmp_path / 'run'
    r = run_script(TRAIN, '--data-dir', shared_data, *SMALL, '--max-epoch', '1', '--reset-after', '--out-dir', str(out))
    assert r.returncode == 0, r.stderr
    assert "reset_after=True" in r.stdout
    import numpy
    from ch_gru.rnnlm import load_model
    from ch_gru.torch_interop import to_torch_model
    model, _ = load_model(str(out / 'CharRnnlm.npz'))
    ids = numpy.arange(24, dtype=numpy.int64).reshape(2, 12) % model.config['vocab_size']
    model.reset_state()
    ours = model.predict(ids)
    theirs = to_torch_model(model).eval()(torch.from_numpy(ids))[0].detach().numpy()
    numpy.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5 * numpy.abs(ours).max())

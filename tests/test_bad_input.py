"""Every row of the bad-input table: one line that names the problem and the
fix, exit status 2 from the script, a UserError from the library, and
nothing already written lost."""
import importlib.util
import os
import re

import numpy as np
import pytest

from common.run.cli import run
from common.errors import CheckpointError, ConfigError, DataError, UserError
from common.optimizer import SGD
from common.run.settings import TrainSettings
from common.run.loop import train_with_validation
from ch_gru.rnnlm import Rnnlm
from dataset import ptb
from helpers import ROOT, script
from helpers.processes import run_python

SCRIPT = script('train_better_rnnlm.py')


def load_script():
    spec = importlib.util.spec_from_file_location('train_better_rnnlm', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT_MODULE = load_script()


def tiny(shared_data, out_dir, *extra):
    ptb_dir = os.path.join(shared_data, 'ptb')
    return ['--train-file', os.path.join(ptb_dir, 'ptb.char.valid.txt'),
            '--valid-file', os.path.join(ptb_dir, 'ptb.char.test.txt'),
            '--test-file', os.path.join(ptb_dir, 'ptb.char.test.txt'), '--max-train-tokens', '2000',
            '--max-eval-tokens', '400', '--wordvec-size', '16', '--hidden-size', '16', '--batch-size', '5',
            '--time-size', '10', '--max-epoch', '1', '--eval-interval', '0', '--seed', '0',
            '--out-dir', str(out_dir), *extra]


@pytest.fixture(scope='module')
def files(shared_data, tmp_path_factory):
    """Bad inputs on disk, and a finished run whose checkpoint they try to resume."""
    d = tmp_path_factory.mktemp('bad')
    (d / 'empty.txt').write_text('')
    (d / 'short.txt').write_text('a b c\nd e\n')
    symbols = [w for w in dict.fromkeys(ptb.read_words(os.path.join(shared_data, 'ptb', 'ptb.char.valid.txt')))
               if w != ptb.EOS]
    (d / 'reordered.txt').write_text((' '.join(reversed(symbols)) + '\n') * 100)   # same 50 symbols, other ids
    (d / 'a_file').write_text('not a directory\n')
    data = d / 'data'
    data.mkdir()
    (data / 'ptb.valid.txt').write_text(' tampered \n')
    run_dir = d / 'run'
    assert run(SCRIPT_MODULE.main, tiny(shared_data, run_dir)) == 0
    ck = (run_dir / 'checkpoint.npz').read_bytes()
    (d / 'truncated.npz').write_bytes(ck[:len(ck) // 2])
    flipped = bytearray(ck)
    flipped[len(ck) // 3] ^= 0x10
    (d / 'flipped.npz').write_bytes(bytes(flipped))
    return d


def call_script(argv):
    """The script's exit status, in process (argparse errors exit via SystemExit)."""
    try:
        return run(SCRIPT_MODULE.main, argv)
    except SystemExit as exc:
        return exc.code


#: row -> (argv from (files directory, shared data directory), regular expression of the message)
ROWS = {
    'checksum mismatch': (
        lambda f, s: ['--train-file', os.path.join(s, 'ptb', 'ptb.char.valid.txt'), '--data-dir', str(f / 'data'),
                      '--out-dir', str(f / 'o1')],
        r"ptb.valid.txt has MD5 [0-9a-f]{32}, expected aa0affc06ff7c36e977d7cd49e3839bf: the file is damaged"),
    'empty corpus': (
        lambda f, s: tiny(s, f / 'o2', '--train-file', str(f / 'empty.txt')),
        r"empty.txt is empty: give a corpus file with at least one line of words"),
    'corpus shorter than batch_size x time_size + 1': (
        lambda f, s: tiny(s, f / 'o3', '--train-file', str(f / 'short.txt'), '--valid-file', str(f / 'short.txt'),
                          '--test-file', str(f / 'short.txt')),
        r"the training corpus has 7 tokens but --batch-size 5 x --time-size 10 needs at least 51: "
        r"use smaller sizes or a longer corpus"),
    'non-positive size': (
        lambda f, s: tiny(s, f / 'o4', '--hidden-size', '0'),
        r"argument --hidden-size: 0 is not a positive integer \(see --help\)"),
    'dropout outside [0, 1)': (
        lambda f, s: tiny(s, f / 'o4', '--dropout', '1'),
        r"argument --dropout: 1 is not in \[0, 1\) \(see --help\)"),
    'negative learning rate': (
        lambda f, s: tiny(s, f / 'o4', '--lr', '-0.5'),
        r"argument --lr: -0.5 is not a positive number \(see --help\)"),
    'divergence factor not above 1': (
        lambda f, s: tiny(s, f / 'o4', '--divergence-factor', '1'),
        r"argument --divergence-factor: 1 is not a number greater than 1"),
    'checkpoint of another model shape': (
        lambda f, s: ['--resume', str(f / 'run' / 'checkpoint.npz'), '--wordvec-size', '8', '--hidden-size', '8'],
        r"checkpoint.npz holds another model \(wordvec_size 16 vs 8; hidden_size 16 vs 8; checkpoint vs this "
        r"run\): resume with the options it was saved with"),
    'checkpoint of another cell type': (
        lambda f, s: ['--resume', str(f / 'run' / 'checkpoint.npz'), '--cell', 'lstm'],
        r"holds another model \(cell 'gru' vs 'lstm'"),
    'checkpoint of another vocabulary': (
        lambda f, s: ['--resume', str(f / 'run' / 'checkpoint.npz'), '--train-file', str(f / 'reordered.txt'),
                      '--valid-file', str(f / 'reordered.txt'), '--test-file', str(f / 'reordered.txt')],
        r"checkpoint.npz was trained with another vocabulary \(id 0 is 'c' in the checkpoint, '.' in this "
        r"run\): resume with the training data it was saved with"),
    'checkpoint of other training data': (
        lambda f, s: ['--resume', str(f / 'run' / 'checkpoint.npz'), '--max-train-tokens', '1900'],
        r"was trained on other data or batches \(train_tokens 2000 vs 1900; train_crc32 \d+ vs \d+; "
        r"checkpoint vs this run\): resume with the data and batch options it was saved with"),
    'truncated checkpoint': (
        lambda f, s: ['--resume', str(f / 'truncated.npz')],
        r"truncated.npz is unreadable \(BadZipFile: .*\): the file is truncated or corrupted; use an intact file"),
    'corrupted checkpoint': (
        lambda f, s: ['--resume', str(f / 'flipped.npz')],
        r"flipped.npz is unreadable \(BadZipFile: .*\): the file is truncated or corrupted"),
    'parameter file given as checkpoint': (
        lambda f, s: ['--resume', str(f / 'run' / 'BetterRnnlm.npz')],
        r"BetterRnnlm.npz holds model parameters only, not a training checkpoint: resume from the "
        r"checkpoint.npz in the run's output directory"),
    'text file given as checkpoint': (
        lambda f, s: ['--resume', str(f / 'short.txt')],
        r"short.txt is not a checkpoint written by this framework \(not an .npz archive, or its first bytes are "
        r"damaged\): check the path"),
    'missing checkpoint': (
        lambda f, s: ['--resume', str(f / 'nope.npz')],
        r"nope.npz: no such checkpoint: check the path"),
    'output directory not writable': (
        lambda f, s: tiny(s, f / 'a_file' / 'out'),
        r"cannot create directory .*a_file/out: Not a directory: choose another --out-dir"),
    'save path not writable': (
        lambda f, s: tiny(s, f / 'o5', '--save', str(f / 'a_file' / 'best.npz')),
        r"cannot create directory .*a_file: File exists: choose another --save"),
    'checkpoint path not writable': (
        lambda f, s: tiny(s, f / 'o6', '--checkpoint', str(f / 'a_file' / 'sub' / 'c.npz')),
        r"cannot create directory .*a_file/sub: Not a directory: choose another --checkpoint"),
}


def snapshot_dir(path):
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))}


@pytest.mark.parametrize('row', list(ROWS))
def test_script_row(row, files, shared_data, capsys):
    make_argv, message = ROWS[row]
    before = snapshot_dir(files / 'run')
    capsys.readouterr()
    status = call_script(make_argv(files, shared_data))
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith('error: ') and err.count('\n') == 1, err
    assert re.search(message, err), err
    assert snapshot_dir(files / 'run') == before          # the run being resumed lost nothing


@pytest.mark.parametrize('blocker,message', [
    ("raise ImportError('No module named cupy')\n",
     r"^error: GPU requested \(config.GPU / DLFS_GPU=1\) but CuPy cannot be imported \(No module named cupy\): "
     r"install CuPy for your CUDA version"),
    ("class cuda:\n    class runtime:\n        @staticmethod\n        def getDeviceCount():\n"
     "            raise RuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')\n",
     r"^error: GPU requested but CuPy finds no usable CUDA device \(cudaErrorNoDevice: no CUDA-capable device "
     r"is detected\): check the NVIDIA driver with nvidia-smi, or run without --gpu"),
], ids=['gpu without CuPy', 'gpu without a device'])
def test_gpu_rows(tmp_path, blocker, message):
    (tmp_path / 'cupy.py').write_text(blocker)
    r = run_python(SCRIPT, {'PYTHONPATH': str(tmp_path) + os.pathsep + ROOT}, '--gpu', '--out-dir', tmp_path / 'out',
                   timeout=120)
    assert r.returncode == 2
    assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr
    assert re.search(message, r.stderr), r.stderr


def library_model():
    np.random.seed(0)
    return Rnnlm(10, 4, 4, num_layers=1, dropout_ratio=0.0)


def library_train(tmp_path, corpus=None, lr=1.0, **kw):
    corpus = np.arange(200) % 10 if corpus is None else corpus
    options = dict(max_epoch=1, batch_size=2, time_size=5, max_grad=None, eval_interval=0,
                   out_dir=str(tmp_path / 'out'))
    options.update(kw)
    return train_with_validation(library_model(), SGD(lr), (corpus, np.arange(100) % 10, None),
                                 TrainSettings(**options))


def offline(tmp_path, monkeypatch):
    monkeypatch.setattr(ptb, 'MIRRORS', ['http://127.0.0.1:1/a/'])
    monkeypatch.setenv('DLFS_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('DLFS_DATA_DIR', raising=False)
    return ptb.load_data('test', data_dir=str(tmp_path))


def a_file(tmp_path):
    (tmp_path / 'f').write_text('a file, not a directory\n')
    return tmp_path / 'f'


LIBRARY_ROWS = {
    'unknown split name': (lambda t, m: ptb.load_data('dev'), DataError,
                           r"unknown PTB split 'dev': use one of train, valid \(or val\), test"),
    'data directory missing a file while offline': (
        offline, DataError, r"ptb.train.txt not found in .* and the download failed .*: copy the file into one of "
                            r"those directories, pass --data-dir DIR or set DLFS_DATA_DIR"),
    'empty corpus': (lambda t, m: library_train(t, np.array([], dtype=np.int32)), DataError,
                     r"the training corpus is empty: give a corpus with at least 11 tokens"),
    'corpus shorter than batch_size x time_size + 1': (
        lambda t, m: library_train(t, np.arange(10)), DataError,
        r"the training corpus has 10 tokens but --batch-size 2 x --time-size 5 needs at least 11"),
    'token id above the vocabulary': (
        lambda t, m: library_train(t, np.arange(200) % 11), DataError,
        r"the training corpus holds token id 10, outside the model's vocabulary of 10 words \(ids 0 to 9\): "
        r"encode it with the vocabulary the model was built with"),
    'negative token id': (
        lambda t, m: library_train(t, np.arange(200) % 10 - 1), DataError,
        r"the training corpus holds token id -1, outside the model's vocabulary"),
    'corpus of floats': (
        lambda t, m: library_train(t, np.arange(200) / 2), DataError,
        r"the training corpus must be a 1-D array of integer token ids, got float64 of shape \(200,\)"),
    'non-positive size (model)': (lambda t, m: Rnnlm(10, 4, 0), ConfigError,
                                  r"hidden_size must be a positive integer, got 0"),
    'non-positive size (training)': (lambda t, m: library_train(t, time_size=0), ConfigError,
                                     r"time_size must be a positive integer, got 0"),
    'dropout outside [0, 1)': (lambda t, m: Rnnlm(10, 4, 4, dropout_ratio=-0.1), ConfigError,
                               r"dropout_ratio must be in \[0, 1\), got -0.1"),
    'negative learning rate': (lambda t, m: library_train(t, lr=-1.0), ConfigError,
                               r"the learning rate must be a positive number, got -1.0: pass e.g. --lr 10"),
    'divergence factor not above 1': (lambda t, m: library_train(t, divergence_factor=0.5), ConfigError,
                                      r"divergence_factor must be a number greater than 1, got 0.5"),
    'output directory not writable': (
        lambda t, m: library_train(t, out_dir=str(a_file(t) / 'out')), ConfigError,
        r"cannot create directory .*f/out: Not a directory: choose another --out-dir"),
}


@pytest.mark.parametrize('row', list(LIBRARY_ROWS))
def test_library_row(row, tmp_path, monkeypatch):
    call, error, message = LIBRARY_ROWS[row]
    with pytest.raises(error, match=message) as err:
        call(tmp_path, monkeypatch)
    assert isinstance(err.value, UserError) and '\n' not in str(err.value)
    assert not os.path.exists(tmp_path / 'out' / 'log.jsonl')       # refused before anything was written


def test_wrong_model_checkpoint_in_library(tmp_path):
    """A checkpoint of another model, given to the library loop."""
    from common.run.checkpoint import load_checkpoint
    library_train(tmp_path, checkpoint_path=str(tmp_path / 'c.npz'))
    np.random.seed(0)
    other = Rnnlm(10, 4, 4, num_layers=2, dropout_ratio=0.0)
    with pytest.raises(CheckpointError, match=r"holds another model \(num_layers 1 vs 2; checkpoint vs this run\)"):
        train_with_validation(other, SGD(1.0), (np.arange(200) % 10, np.arange(100) % 10, None),
                              TrainSettings(max_epoch=1, batch_size=2, time_size=5, max_grad=None, eval_interval=0,
                                            out_dir=str(tmp_path / 'out')),
                              resume=load_checkpoint(str(tmp_path / 'c.npz')))


def test_script_gives_up_after_repeated_divergence(files, tmp_path, capsys):
    """--resume with a learning rate that overflows: two warnings, then one
    error line and status 2; the best parameters and the checkpoint stay."""
    import shutil
    run_dir = tmp_path / 'run'
    shutil.copytree(files / 'run', run_dir)
    before = snapshot_dir(run_dir)
    capsys.readouterr()
    status = call_script(['--resume', str(run_dir / 'checkpoint.npz'), '--out-dir', str(run_dir), '--lr', '1e38',
                          '--max-epoch', '2'])
    out, err = capsys.readouterr()
    assert status == 2
    assert err.startswith('error: training diverged 3 times in a row (last: ') and err.count('\n') == 1, err
    assert err.rstrip().endswith('start again with a smaller --lr or --max-grad')
    assert len([line for line in out.splitlines() if line.startswith('-- warning: ')]) == 2
    after = snapshot_dir(run_dir)
    for name in ('checkpoint.npz', 'BetterRnnlm.npz'):
        assert after[name] == before[name]

"""scripts/bench_char.py end to end on a tiny budget, without PyTorch."""
import json
import os

from helpers import ROOT, script
from helpers.processes import run_python


def run_script(script, *args, env=None):
    return run_python(script, env, *args)


def test_benchmark_runs_and_skips_pytorch_when_missing(shared_data, tmp_path):
    """scripts/bench_char.py end to end on a tiny budget (its figures are not
    checked here: speed is measured by running it, never in a test)."""
    (tmp_path / 'torch.py').write_text("raise ImportError('No module named torch')\n")
    env = {'PYTHONPATH': str(tmp_path) + os.pathsep + ROOT}
    out = tmp_path / 'bench'
    r = run_script(script('bench_char.py'), '--data-dir', shared_data, '--seconds', '1',
                   '--hidden-size', '32', '--embed-size', '16', '--valid-interval', '5', '--sample', '50',
                   '--out', str(out), '--run-dir', str(tmp_path / 'run'), env=env)
    assert r.returncode == 0, r.stderr
    assert '== PyTorch skipped: PyTorch is not installed' in r.stdout
    assert 'target: valid loss <= 1.60 nats/char after <= 1 s of training: NOT met' in r.stdout
    report = json.loads((tmp_path / 'bench.json').read_text())
    assert list(report['results']) == ['dlfs-gru'] and report['torch'] == 'skipped: PyTorch is not installed'
    ours = report['results']['dlfs-gru']
    # The budget is judged from the previous iteration's duration, so on a busy
    # machine the last iteration may overrun it a little (the exact rule is
    # tested with a fake clock in test_parts.py).
    assert ours['train_seconds'] < 3.0 or ours['iters'] == 1
    assert ours['curve'][-1]['iter'] == ours['iters'] and len(ours['sample']) == 50
    assert (tmp_path / 'bench.png').read_bytes()[:4] == b'\x89PNG'

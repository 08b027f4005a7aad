"""scripts/bench.py runs (at toy sizes; no timing is asserted here)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, 'tests')


def test_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / 'bench.json'
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'bench.py'), '--tiny', '--blocks', '1',
                        '--warmup', '0', '--iters', '2', '--pause', '0', '--json', str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert {'train', 'eval', 'char', 'memory'} <= set(result)
    assert result['train']['median_s']['ours'] > 0
    assert result['memory']['ours']['peak_rss_mb'] > 0
    if result['torch']:
        assert 'ratio ours/pytorch' in r.stdout and result['train']['ratio'] > 0


def test_bench_gpu_path_runs_on_the_stand_in_cupy(tmp_path):
    env = dict(os.environ, DLFS_GPU='1', PYTHONPATH=os.path.join(HERE, 'fake_cupy') + os.pathsep + os.environ.get('PYTHONPATH', ''))
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'bench.py'), '--gpu', '--tiny', '--no-torch',
                        '--only', 'train,eval,memory', '--blocks', '1', '--warmup', '0', '--iters', '2', '--pause', '0',
                        '--json', str(tmp_path / 'b.json')], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / 'b.json').read_text())['backend'] == 'cupy'

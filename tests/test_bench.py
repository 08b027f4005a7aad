"""scripts/bench.py runs (at toy sizes; no timing is asserted here)."""
import json

from helpers import script
from helpers.processes import run_python


def test_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / 'bench.json'
    r = run_python(script('bench.py'), {}, '--tiny', '--blocks', '1', '--warmup', '0', '--iters', '2', '--pause', '0',
                   '--json', out)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert {'train', 'eval', 'char', 'memory'} <= set(result)
    assert result['train']['median_s']['ours'] > 0
    assert result['memory']['ours']['peak_rss_mb'] > 0
    if result['torch']:
        assert 'ratio ours/pytorch' in r.stdout and result['train']['ratio'] > 0


def test_bench_gpu_path_runs_on_the_stand_in_cupy(tmp_path):
    r = run_python(script('bench.py'), {'DLFS_GPU': '1'}, '--gpu', '--tiny', '--no-torch', '--only', 'train,eval,memory',
                   '--blocks', '1', '--warmup', '0', '--iters', '2', '--pause', '0', '--json', tmp_path / 'b.json',
                   fake_cupy=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / 'b.json').read_text())['backend'] == 'cupy'

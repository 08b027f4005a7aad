"""scripts/bench.py runs (at toy sizes; no timing is asserted here), and scripts/support.py."""
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


def support_module():
    sys.path.insert(0, os.path.join(ROOT, 'scripts'))
    import support
    return support


def test_machine_description_with_and_without_threadpoolctl(monkeypatch):
    import types
    support = support_module()
    monkeypatch.setitem(sys.modules, 'threadpoolctl', None)          # not installed: an ImportError
    info = support.machine()
    assert info['cores'] == os.cpu_count() and info['cpu'] and info['numpy']
    assert support.describe(info).startswith(f"{info['cpu']}, {info['cores']} cores, ")
    fake = types.ModuleType('threadpoolctl')
    fake.threadpool_info = lambda: [{'user_api': 'blas', 'internal_api': 'openblas', 'version': '0.3.99',
                                     'architecture': 'Haswell', 'num_threads': 2}]
    monkeypatch.setitem(sys.modules, 'threadpoolctl', fake)
    assert support.blas() == 'openblas 0.3.99, Haswell kernel, 2 threads'
    assert 'BLAS openblas 0.3.99' in support.describe()


def test_read_log(tmp_path):
    support = support_module()
    assert support.read_log(str(tmp_path)) == []
    (tmp_path / 'log.jsonl').write_text('{"event": "start"}\n\n{"event": "end", "test_ppl": 1.5}\n')
    assert support.read_log(str(tmp_path)) == [{'event': 'start'}, {'event': 'end', 'test_ppl': 1.5}]


def test_no_function_in_scripts_or_dataset_is_over_60_lines():
    import ast
    long = []
    for folder in ('scripts', 'dataset'):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith('.py'):
                with open(os.path.join(ROOT, folder, name), encoding='utf-8') as f:
                    tree = ast.parse(f.read())
                long += [f'{folder}/{name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)'
                         for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and node.end_lineno - node.lineno + 1 > 60]
    assert not long, long

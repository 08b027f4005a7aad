"""scripts/check_gpu.py, run on the stand-in CuPy: it passes on the real code
and exits non-zero when a fused kernel computes something wrong."""
import json
import os

from helpers.processes import run_python

SCRIPT = os.path.join('scripts', 'check_gpu.py')


def run_check(tmp_path, shared_data, skip='bench', **env):
    path = tmp_path / 'check.json'
    r = run_python(SCRIPT, env, '--quick', '--skip', skip, '--iters', '8', '--data-dir', shared_data,
                   '--json', str(path), fake_cupy=True)
    return r, json.loads(path.read_text())


def test_check_gpu_passes_on_the_stand_in(tmp_path, shared_data):
    r, result = run_check(tmp_path, shared_data)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert result['failed'] == 0 and result['environment']['backend'] == 'cupy'
    sections = {row['section'] for row in result['checks']}
    assert sections == {'gradcheck', 'oracle', 'graph', 'train', 'script', 'parallel'}
    names = {row['check'] for row in result['checks']}
    assert {'TimeGRU (carried h)', 'generate_text.py', '--resume for a third epoch',
            'two ranks on one GPU = one process'} <= names
    graph = {row['check']: row for row in result['checks'] if row['section'] == 'graph'}
    assert {'GEMM vs cupy.matmul (eager)', 'GEMM captured, beta 1, 3 replays', 'training step captured',
            'curve: graph vs eager (float64, lr change)', 'dropout masks: as eager, new each replay',
            'evaluation: graph vs eager (float64)'} <= set(graph)
    assert graph['training step captured']['nodes'] > 50, graph['training step captured']
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    # the GRU of PyTorch's form, with nn.GRU's weights, against nn.GRU (cuDNN where torch has CUDA)
    rows = {row['check']: row for row in result['checks']}
    for dtype in ('float64', 'float32'):
        row = rows[f'TimeGRU reset_after ({dtype}) vs torch (cpu)']
        assert row['status'] == 'PASS' and row['rel_diff'] < (1e-12 if dtype == 'float64' else 1e-5), row


def test_check_gpu_fails_on_a_wrong_kernel(tmp_path, shared_data):
    r, result = run_check(tmp_path, shared_data, skip='bench,script', FAKE_CUPY_KERNEL_BUG='1')
    assert r.returncode == 1
    failed = {row['check'] for row in result['checks'] if row['status'] == 'FAIL'}
    assert 'TimeGRU (carried h)' in failed and 'TimeLSTM (carried h, c)' not in failed
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:                                  # the reset-after kernels are checked too
        assert {'TimeGRU reset_after (float64) vs torch (cpu)', 'TimeGRU reset_after (float32) vs torch (cpu)'} <= failed
    assert any(name.startswith('loss curve vs NumPy') for name in failed)


def test_unknown_section_is_a_one_line_error(tmp_path):
    r = run_python(SCRIPT, {}, '--skip', 'grad', '--cpu', '--json', str(tmp_path / 'x.json'))
    assert r.returncode == 2 and 'unknown section' in r.stderr and 'Traceback' not in r.stderr

"""notebooks/: each notebook runs top to bottom at the small sizes (DLFS_NOTEBOOK_SMALL=1) in a python3
kernel started in the repository root on this checkout, and is stored without outputs."""
import glob
import os

import pytest

from helpers import FAKE_CUPY, IN_CI, ROOT
from helpers.processes import CLEARED

if IN_CI:                            # CI installs the [notebooks] extra: a missing one is a failure there
    import nbclient
    import nbformat
else:
    nbclient = pytest.importorskip('nbclient')
    nbformat = pytest.importorskip('nbformat')

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, 'notebooks', '*.ipynb')))


def test_the_three_notebooks_in_the_books_order():
    assert [os.path.basename(p) for p in NOTEBOOKS] == ['01_gru_layer.ipynb', '02_word_model_ptb_mini.ipynb',
                                                        '03_char_model_sampling.ipynb']


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == 'code']
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert 'DLFS_NOTEBOOK_SMALL' in code[0].source and 'common import config' in code[0].source


def execute(path, monkeypatch, tmp_path, gpu=False):
    """Run the notebook at ``path`` at the small sizes; the text it printed."""
    for name in CLEARED:                              # DLFS_GPU among them: set below, or NumPy
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('DLFS_NOTEBOOK_SMALL', '1')
    paths = ([FAKE_CUPY, ROOT] if gpu else [ROOT]) + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(paths))
    if gpu:
        monkeypatch.setenv('DLFS_GPU', '1')
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    monkeypatch.setenv('TMPDIR', str(tmp_path))       # the notebooks' work folders
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': ROOT}})
    client.execute()                                  # CellExecutionError, naming the cell, if any cell fails
    outputs = [o for cell in nb.cells if cell.cell_type == 'code' for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == 'error']
    if path != NOTEBOOKS[0]:                          # notebooks 2 and 3 show their figures
        assert any('image/png' in o.get('data', {}) for o in outputs)
    return ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_runs_top_to_bottom(path, monkeypatch, tmp_path):
    assert 'backend: NumPy (CPU) | small sizes' in execute(path, monkeypatch, tmp_path)


def test_the_gru_notebook_runs_unchanged_on_the_gpu_path(monkeypatch, tmp_path):
    """DLFS_GPU=1 with the stand-in CuPy (tests/fake_cupy): the same cells on the CuPy code path."""
    text = execute(NOTEBOOKS[0], monkeypatch, tmp_path, gpu=True)
    assert 'backend: CuPy (GPU) | small sizes' in text

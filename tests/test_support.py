"""scripts/support.py: the machine description (with and without threadpoolctl) and the log reader."""
import os
import sys

from helpers import ROOT


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

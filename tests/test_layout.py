"""The layout the code promises in docs/architecture.md: the book's modules up
front, no import cycles, modules that must not load the array backend, short
functions, and a module map that matches the files."""
import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('common', 'ch_gru', 'dataset')
#: The names of the book's common/ modules that exist here: their imports must keep working.
BOOK_MODULES = ('np', 'config', 'functions', 'layers', 'time_layers', 'optimizer', 'trainer', 'util', 'base_model')


def python_files(*folders):
    for folder in folders:
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, folder)):
            dirnames[:] = [d for d in dirnames if d != '__pycache__']
            for f in sorted(files):
                if f.endswith('.py'):
                    yield os.path.join(dirpath, f)


def module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
    return rel.removesuffix('.__init__')


def project_imports(path, modules):
    """The project modules ``path`` imports, at module level or inside a function."""
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                found.add(node.module)
            for alias in node.names:         # from common import backend: a module, not a name
                if f'{node.module}.{alias.name}' in modules:
                    found.add(f'{node.module}.{alias.name}')
    return found


def import_graph():
    paths = {module_name(p): p for p in python_files(*PACKAGES)}
    modules = set(paths)
    return {m: project_imports(p, modules) - {m} for m, p in paths.items()}


def cycles(graph):
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_the_packages():
    graph = import_graph()
    assert 'common.run.loop' in graph and graph['common.trainer'], 'the import graph was not read'
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path):
    a = tmp_path / 'a.py'
    a.write_text('def f():\n    from pkg import b\n')
    assert project_imports(str(a), {'pkg.b'}) == {'pkg.b'}
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_common_top_level_holds_the_book_modules_and_few_others():
    top = sorted(f for f in os.listdir(os.path.join(ROOT, 'common')) if f.endswith('.py'))
    assert len(top) <= 16, top
    for name in BOOK_MODULES:
        assert f'{name}.py' in top


@pytest.mark.parametrize('modules', [
    'common.run.settings', 'common.run.cli', 'common.run.checkpoint', 'common.parallel.communicator',
    'common.parallel.launch',
    'common.config, common.errors'])
def test_modules_a_script_reads_before_choosing_the_backend_do_not_load_it(modules):
    code = (f'import sys\nimport {modules}\n'
            "loaded = sorted(m for m in sys.modules if m in ('common.backend', 'common.np', 'cupy'))\n"
            'print(loaded)\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '[]'


def test_book_code_imports_keep_working():
    """The import lines of the book's chapter 5-6 scripts and models."""
    namespace = {}
    exec('from common.np import *\n'
         'from common import config\n'
         'from common.optimizer import SGD, Adam\n'
         'from common.trainer import RnnlmTrainer\n'
         'from common.util import eval_perplexity, to_cpu, to_gpu, clip_grads\n'
         'from common.time_layers import TimeEmbedding, TimeLSTM, TimeAffine, TimeSoftmaxWithLoss, TimeDropout\n'
         'from common.time_layers import TimeRNN, TimeGRU\n'
         'from common.base_model import BaseModel\n'
         'from common.functions import softmax, sigmoid\n'
         'from dataset import ptb\n', namespace)
    import numpy
    assert namespace['np'] is numpy
    assert callable(namespace['RnnlmTrainer']) and callable(namespace['ptb'].load_data)


def long_functions(limit=60):
    for path in python_files(*PACKAGES, 'scripts'):
        for node in ast.walk(ast.parse(open(path, encoding='utf-8').read(), path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    yield f'{os.path.relpath(path, ROOT)}:{node.lineno} {node.name} ({length} lines)'


def test_no_function_over_60_lines():
    assert list(long_functions()) == []


def module_map():
    """The rows of docs/architecture.md's module map: (files of the row, what they may import), as
    paths; a folder ('common/run/') stands for the modules directly in it, 'anything' for no limit."""
    text = open(os.path.join(ROOT, 'docs', 'architecture.md'), encoding='utf-8').read()
    section = text.split('## Module map', 1)[1].split('\n## ', 1)[0]
    rows = []
    for row in section.splitlines():
        if not row.startswith('| `'):
            continue
        first, _, may = row.split('|')[1:4]
        folder, names = first.split(':', 1)
        folder = folder.strip().strip('`')
        files = {folder + name for name in re.findall(r'`([\w.]+)`', names)}
        allowed = None if may.strip() == 'anything' else set(re.findall(r'`([\w/.]+)`', may))
        rows.append((files, allowed))
    return rows


def path_of(module):
    return module.replace('.', '/') + '.py'


def in_folder(path, folder):
    return os.path.dirname(path) + '/' == folder


def test_the_module_map_in_the_docs_names_every_module_and_only_those():
    named = set().union(*(files for files, _ in module_map()))
    actual = {os.path.relpath(p, ROOT) for p in python_files(*PACKAGES, 'scripts')
              if not p.endswith('__init__.py')}
    assert named - actual == set(), 'the map names files that do not exist'
    assert actual - named == set(), 'files missing from the map'


def test_every_module_imports_only_what_the_module_map_allows():
    graph, packages = import_graph(), set(PACKAGES) | {'common.run', 'common.parallel', 'common.batching'}
    rows, broken = module_map(), []
    for files, allowed in rows:
        for path in files:
            if allowed is None or path.startswith('scripts/'):
                continue
            for target in sorted(graph[path[:-3].replace('/', '.')] - packages):
                target_path = path_of(target)
                ok = target_path in files or any(target_path == a or (a.endswith('/') and in_folder(target_path, a))
                                                 for a in allowed)
                if not ok:
                    broken.append(f'{path} imports {target_path}')
    assert broken == []


def test_the_map_check_sees_a_forbidden_import():
    allowed = {'common/errors.py'}
    assert not any(path_of('common.trainer') == a or (a.endswith('/') and in_folder(path_of('common.trainer'), a))
                   for a in allowed)
    assert in_folder('common/run/loop.py', 'common/run/') and not in_folder('common/run/loop.py', 'common/')


def test_every_package_is_installed_by_pyproject():
    import tomllib
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        listed = set(tomllib.load(f)['tool']['setuptools']['packages'])
    folders = {module_name(os.path.dirname(p) + '/__init__.py') for p in python_files(*PACKAGES)}
    assert folders == listed
    for package in folders:
        assert os.path.isfile(os.path.join(ROOT, *package.split('.'), '__init__.py')), package

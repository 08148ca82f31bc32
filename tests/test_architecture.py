"""The package's shape: layers whose imports run one way, no import circle, Triton only on the CUDA fast path.

Layers (``backbones/__init__.py`` says what each holds): ``utils`` < ``models`` < ``engine``, ``datasets`` <
``apis``, ``analysis``, ``deploy``, over ``backbones.registry`` (the scope's registries, MMEngine only). A module
may import its own folder, the layers below and the registry module; of the top layer,
``analysis`` may use ``apis`` (models from configs) and ``deploy`` (ONNX Runtime rows), ``deploy`` may use
``apis``. Imports inside
functions count too: a lazy import is still an arrow.
"""
import ast
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

PKG = os.path.join(REPO, 'backbones')
LAYER = {'utils': 0, 'models': 1, 'engine': 2, 'datasets': 2, 'apis': 3, 'analysis': 3, 'deploy': 3}
BASE = {'backbones.registry'}  # the scope's registries: import only MMEngine, imported by any layer
ALSO = {('analysis', 'apis'), ('analysis', 'deploy'), ('deploy', 'apis')}  # same-layer arrows allowed (one way)


def _modules():
    out = {}
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith('.py'):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
                out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = path
    return out


def _imports(path, modules):
    """The ``backbones.*`` modules a file imports, anywhere in it (``from backbones.x import y`` counts as
    ``backbones.x.y`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module + '.' + a.name for a in node.names]
            found.update(n for n in names if n in modules)
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add('<relative>')
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == '<relative>' or m.split('.')[0] in ('backbones', 'train_cls')}


def _graph():
    modules = _modules()
    return modules, {m: _imports(p, modules) for m, p in modules.items()}


def _wing(module: str):
    parts = module.split('.')
    return parts[1] if len(parts) > 1 and parts[1] in LAYER else None


def test_imports_run_one_way():
    modules, graph = _graph()
    bad = []
    for mod, deps in graph.items():
        src = _wing(mod)
        for dep in deps:
            if dep == '<relative>':
                bad.append(f'{mod}: relative import (write backbones.<wing>...)')
            elif dep.startswith('train_cls'):
                bad.append(f'{mod} -> {dep}: the library never imports its consumer train_cls')
            elif src is not None and dep != 'backbones' and dep not in BASE:
                dst = _wing(dep)
                if dst is None:
                    bad.append(f'{mod} -> {dep}: a wing imports the package root')
                elif dst != src and LAYER[dst] >= LAYER[src] and (src, dst) not in ALSO:
                    bad.append(f'{mod} -> {dep}: {src} (layer {LAYER[src]}) may not import {dst} (layer {LAYER[dst]})')
    for mod in BASE:  # a base module imports no part of the package
        bad += [f'{mod} -> {dep}: a base module imports the package' for dep in graph[mod]]
    assert not bad, '\n'.join(bad)
    assert set(LAYER) == {d for d in os.listdir(PKG) if os.path.isfile(os.path.join(PKG, d, '__init__.py'))}


def _edges(modules, graph):
    return {m: {d for d in deps if d in modules and d != m and d != 'backbones'} for m, deps in graph.items()}


def _cycles(edges):
    """Every back edge of a depth-first walk, as the circle it closes."""
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = 'open'
        for d in sorted(edges[m]):
            if state.get(d) == 'open':
                cycles.append(' -> '.join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 'done'

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_circle():
    modules, graph = _graph()
    cycles = _cycles(_edges(modules, graph))
    assert not cycles, '\n'.join(cycles)


def test_the_checks_find_what_they_look_for():
    """Controls: a kernel module importing the model closes a circle, and is an arrow up the layers when it
    points from models to engine."""
    modules, graph = _graph()
    graph['backbones.models.ops.fast_block'].add('backbones.models.inceptionnext')
    assert any('fast_block' in c for c in _cycles(_edges(modules, graph)))
    graph['backbones.models.weights'].add('backbones.engine.hooks')
    assert _wing('backbones.engine.hooks') == 'engine' and LAYER['engine'] > LAYER['models']


@pytest.mark.slow
@pytest.mark.parametrize('fast_path', [False, True])
def test_triton_kernels_load_only_on_the_cuda_fast_path(fast_path):
    """Building and running a model on CPU (plain or fast form) imports none of our Triton kernels and
    registers no custom op (timm itself may import the triton package: that is not ours to avoid)."""
    code = ('import sys, torch; from backbones import InceptionNeXt; '
            f'm = InceptionNeXt("atto", fast_path={fast_path}); m.eval()(torch.randn(1, 3, 32, 32)); '
            'm.train()(torch.randn(2, 3, 32, 32)); '
            'print("backbones.models.ops.triton_dwconv" in sys.modules, '
            'hasattr(torch.ops.inceptionnext, "inception_dw")); '
            'from backbones.models.ops import triton_dwconv; '
            'print("backbones.models.ops.triton_dwconv" in sys.modules, '
            'triton_dwconv.AVAILABLE == hasattr(torch.ops.inceptionnext, "inception_dw"))')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    # the second line is the control: importing the kernels is seen by both probes
    assert r.stdout.strip().splitlines()[-2:] == ['False False', 'True True']


# What `import backbones` must not import: timm's package import (torchvision, torch's compiler and exporter,
# the Hugging Face client) was most of its start-up and that of every tool (docs/benchmarks.md).
NOT_IMPORTED = ('timm', 'torchvision', 'torch._dynamo', 'torch._inductor', 'torch.onnx', 'triton',
                'huggingface_hub', 'mmseg', 'mmdet')


@pytest.mark.slow
def test_import_backbones_stays_light():
    """A fresh ``import backbones`` registers the model, hooks, steps and runner without importing the
    modules of NOT_IMPORTED; the control line imports timm, mmseg and mmdet and sees them."""
    probe = f'print(sorted(m for m in {NOT_IMPORTED!r} if m in sys.modules))'
    code = ('import sys, backbones; from mmengine.registry import HOOKS, MODELS, RUNNERS, TRANSFORMS; '
            'print(all(r.get(n) is not None for r, n in ((MODELS, "InceptionNeXt"), '
            '(MODELS, "ChannelsFirstLN"), (HOOKS, "SaveOnSignalHook"), (TRANSFORMS, "CheckSegMap"), '
            '(RUNNERS, "RobustRunner")))); '
            f'{probe}; import timm, mmseg, mmdet; {probe}')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    registered, before, control = r.stdout.strip().splitlines()[-3:]
    assert registered == 'True'
    assert before == '[]', f'import backbones imported {before}'
    assert set(ast.literal_eval(control)) >= set(NOT_IMPORTED) - {'triton'}, control  # triton if installed


def test_one_version():
    """setup.cfg reads the version from backbones/version.py: the installed metadata (what pip and mim show)
    and ``backbones.__version__`` agree."""
    import importlib.metadata

    import backbones
    assert importlib.metadata.version('inceptionnext-dense') == backbones.__version__
    assert 'version = attr: backbones.version.__version__' in open(os.path.join(REPO, 'setup.cfg')).read()


MAX_LINES = 450  # one concern per file; the model file (one readable module per family, as timm's) is the exception
LONG_ALLOWED = {'backbones/models/inceptionnext.py'}


def long_files(root, limit=MAX_LINES, allowed=LONG_ALLOWED):
    """Product Python files (the package, train_cls/, tools/) of more than ``limit`` lines, as 'path: n'."""
    out = []
    for top in ('backbones', 'train_cls', 'tools'):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root).replace(os.sep, '/')
                if f.endswith('.py') and rel not in allowed:
                    with open(path, encoding='utf-8') as fh:
                        n = sum(1 for _ in fh)
                    if n > limit:
                        out.append(f'{rel}: {n}')
    return out


def test_no_product_file_is_long(tmp_path):
    assert long_files(REPO) == []
    # the control: a long file is named, the allowed one is not
    (tmp_path / 'backbones' / 'models').mkdir(parents=True)
    (tmp_path / 'backbones' / 'big.py').write_text('x = 1\n' * 451)
    (tmp_path / 'backbones' / 'models' / 'inceptionnext.py').write_text('x = 1\n' * 900)
    assert long_files(str(tmp_path)) == ['backbones/big.py: 451']

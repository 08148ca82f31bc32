"""Prepares an unpacked mmcv 2.1.0 sdist for tools/setup_env.sh's CPU build of its compiled ops.

    python tools/setup/mmcv_ops.py SDIST_DIR --ops tools/setup/mmcv_ops.txt   # only the ops the suite calls (default)
    python tools/setup/mmcv_ops.py SDIST_DIR --all                      # every op mmcv has for CPU

Both: setup.py's ``-std=c++17`` becomes ``-std=c++20`` (torch >= 2.14's headers need it), followed by
``-g0``: no debug information, which took 55-60% of each file's compile time and does not change the ops'
code. With ``--ops``, the sources of the other ops are removed, their ``m.def`` bindings are dropped from
pybind.cpp, and mmcv's ``load_ext`` is patched: a function named by an ``mmcv.ops`` module but left out of
the build becomes one that raises ``OpNotBuiltError`` (naming the op and the full build) when called, so
``import mmcv.ops``, mmdet and mmseg import as before. Any other missing function still fails mmcv's own
assertion. Runs with the stack's Python before the build (standard library only).
"""
import argparse
import os
import re
import sys

CSRC = 'mmcv/ops/csrc/pytorch'
ALWAYS = ('info', 'pybind')  # compiler / CUDA version queries (mmcv.ops.info) and the module's bindings
MODULE_OPEN = 'PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {'
FULL_BUILD = 'INX_MMCV_OPS=all bash tools/setup_env.sh'

LOADER_ORIGINAL = """    def load_ext(name, funcs):
        ext = importlib.import_module('mmcv.' + name)
        for fun in funcs:
            assert hasattr(ext, fun), f'{fun} miss in module {name}'
        return ext
"""

LOADER_PATCHED = '''    def load_ext(name, funcs):
        ext = importlib.import_module('mmcv.' + name)
        left_out = [f for f in funcs if not hasattr(ext, f) and f in LEFT_OUT_FUNCTIONS]
        for fun in funcs:
            assert hasattr(ext, fun) or fun in left_out, f'{fun} miss in module {name}'
        if not left_out:
            return ext
        return _PartialExt(ext, left_out, sys._getframe(1).f_globals.get('__name__', 'mmcv'))
'''

LOADER_ADDITIONS = '''

# ---- Written by InceptionNeXt's tools/setup/mmcv_ops.py (tools/setup_env.sh): this build's compiled ops. ----
import sys  # noqa: E402

#: the op sources compiled into mmcv._ext (mmcv/ops/csrc/pytorch/NAME.cpp and cpu/NAME.cpp)
BUILT_SOURCES = {built!r}
#: the functions of mmcv._ext that this build leaves out (empty: the full set)
LEFT_OUT_FUNCTIONS = frozenset({left_out!r})
FULL_BUILD = {full_build!r}


class OpNotBuiltError(NotImplementedError):
    """An mmcv op that this CPU build does not compile was called."""


def _not_built(fun, module):
    def not_built(*args, **kwargs):
        raise OpNotBuiltError(
            f'mmcv op {{fun}} (called by {{module}}) is not compiled in this mmcv: the CPU build made by '
            f"tools/setup_env.sh compiles only the ops the suite's detectors and segmentors call "
            f'({{", ".join(s for s in BUILT_SOURCES if s not in ("info", "pybind"))}}). '
            f'To build every mmcv op: {{FULL_BUILD}} (see docs/setup.md)')
    not_built.__name__ = fun
    return not_built


class _PartialExt:
    """mmcv._ext as one mmcv.ops module sees it: its compiled functions, and for each function that this
    build leaves out, one that raises OpNotBuiltError when called."""

    def __init__(self, ext, left_out, module):
        self._ext = ext
        for fun in left_out:
            setattr(self, fun, _not_built(fun, module))

    def __getattr__(self, attr):
        return getattr(self._ext, attr)
'''


def read_op_list(path):
    """The op names of an ops file: one a line, ``#`` starts a comment."""
    names = []
    with open(path) as f:
        for line in f:
            name = line.split('#', 1)[0].strip()
            if name:
                names.append(name)
    return names


def split_bindings(pybind):
    """(text before the module body, [each ``m.def(...);`` statement], text after the last one)."""
    start = pybind.index(MODULE_OPEN) + len(MODULE_OPEN)
    stmts, pos = [], start
    while True:
        i = pybind.find('m.def(', pos)
        if i < 0:
            break
        depth, j = 0, i + len('m.def')
        while True:  # to the parenthesis closing m.def( (no parentheses inside its string literals)
            c = pybind[j]
            depth += (c == '(') - (c == ')')
            j += 1
            if depth == 0:
                break
        assert pybind[j] == ';', pybind[i:j + 20]
        stmts.append(pybind[i:j + 1])
        pos = j + 1
    rest = pybind[pos:]
    assert rest.strip() == '}', f'unexpected statements in the module body: {rest[:200]!r}'
    return pybind[:start], stmts, rest


def bound_function(stmt):
    """(the Python name, the C++ function) of one ``m.def("name", &function, ...);``."""
    m = re.match(r'm\.def\(\s*"(\w+)",\s*&(\w+)(<\w+>)?\s*,', stmt)
    assert m, stmt[:200]
    return m.group(1), m.group(2)


def defines(source, function):
    """Whether C++ ``source`` defines ``function`` at file level (a definition starts at column 0; its
    parameter list holds no ``;`` or braces, unlike a declaration or a call)."""
    return re.search(rf'^[A-Za-z_][^;{{}}()]*\b{function}\s*\([^;{{}}]*\)\s*\{{', source, re.M) is not None


def prepare(sdist, names):
    """Patches the sdist for a CPU build of the op sources ``names`` (None: all). Returns (built sources,
    bound functions, left-out functions)."""
    csrc = os.path.join(sdist, CSRC)
    setup_py = os.path.join(sdist, 'setup.py')
    with open(setup_py) as f:
        text = f.read()
    text = text.replace('-std=c++17', '-std=c++20')  # every place, the nvcc flags of a CUDA build too
    gcc_flags = "extra_compile_args['cxx'] = ['-std=c++20']"
    assert text.count(gcc_flags) == 1, 'mmcv setup.py: its gcc flags moved'
    with open(setup_py, 'w') as f:
        f.write(text.replace(gcc_flags, gcc_flags[:-1] + ", '-g0']"))

    sources = sorted(f[:-4] for f in os.listdir(csrc) if f.endswith('.cpp'))
    cpu_sources = sorted(f[:-4] for f in os.listdir(os.path.join(csrc, 'cpu')) if f.endswith('.cpp'))
    with open(os.path.join(csrc, 'pybind.cpp')) as f:
        pybind = f.read()
    head, stmts, tail = split_bindings(pybind)
    bound = [bound_function(s) for s in stmts]
    if names is None:
        built, keep = sources, stmts
    else:
        unknown = sorted(set(names) - set(sources) - set(ALWAYS))
        if unknown:
            sys.exit(f'error: {", ".join(unknown)}: no such mmcv op source in {CSRC} '
                     f'(known: {", ".join(s for s in sources if s not in ALWAYS)})')
        built = sorted(set(names) | set(ALWAYS))
        keep = []
        for s in built:
            with open(os.path.join(csrc, s + '.cpp')) as f:
                text = f.read()
            mine = [stmt for stmt, (_, fn) in zip(stmts, bound) if defines(text, fn)]
            assert mine or s == 'pybind', f'{s}.cpp defines none of the functions pybind.cpp binds'
            keep += mine
        keep = [stmt for stmt in stmts if stmt in keep]  # pybind.cpp's order
        for s in sources:
            if s not in built:
                os.remove(os.path.join(csrc, s + '.cpp'))
        for s in cpu_sources:
            if s not in built:
                os.remove(os.path.join(csrc, 'cpu', s + '.cpp'))
        with open(os.path.join(csrc, 'pybind.cpp'), 'w') as f:
            f.write(head + '\n  ' + '\n  '.join(keep) + '\n' + tail)
    kept = [bound_function(s)[0] for s in keep]
    left_out = sorted(name for name, _ in bound if name not in kept)

    loader_py = os.path.join(sdist, 'mmcv', 'utils', 'ext_loader.py')
    with open(loader_py) as f:
        loader = f.read()
    assert LOADER_ORIGINAL in loader, 'mmcv ext_loader.load_ext changed'
    loader = loader.replace(LOADER_ORIGINAL, LOADER_PATCHED)
    loader += LOADER_ADDITIONS.format(built=tuple(built), left_out=tuple(left_out), full_build=FULL_BUILD)
    with open(loader_py, 'w') as f:
        f.write(loader)
    return built, kept, left_out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('sdist', help='the unpacked mmcv-2.1.0 folder')
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument('--ops', help='a file of op source names, one a line (tools/setup/mmcv_ops.txt)')
    g.add_argument('--all', action='store_true', help='every op mmcv has for CPU')
    args = p.parse_args()
    built, kept, left_out = prepare(args.sdist, None if args.all else read_op_list(args.ops))
    csrc = os.path.join(args.sdist, CSRC)
    n_files = sum(f.endswith('.cpp') for d in (csrc, os.path.join(csrc, 'cpu')) for f in os.listdir(d))
    what = 'every op' if args.all else ', '.join(s for s in built if s not in ALWAYS)
    print(f'    {n_files} C++ files to compile ({what}); {len(kept)} functions bound, '
          f'{len(left_out)} left out')


if __name__ == '__main__':
    main()

"""Tools run in the test process: ``tool`` as ``python SCRIPT ARGS`` from the repo root would run it
(docs/testing.md, "In-process tools and real processes"); ``run_in_process`` calls a tool's ``main(argv)``
the way its ``__main__`` block does, for the bad-input cases (exit code and stderr only)."""
import contextlib
import importlib.util
import io
import logging
import os
import os.path as osp
import re
import sys
import traceback

import torch

from backbones.utils.cli import run_cli
from tests.conftest import FRESH_PROCESS_THREADS
from tests.helpers import REPO
from tests.helpers.mmengine_state import instance_table, manager_classes, set_aside

TOOLS = osp.join(REPO, 'tools')


@contextlib.contextmanager
def _redirected_output():
    """stdout and stderr of the Python code run inside, as two StringIO objects (never closed: a logger made
    inside keeps writing to its stream after the run, harmlessly). MMEngine loggers made before the run
    (print_log's 'current' instance) write there too for the time of the run."""
    from mmengine.logging import MMLogger
    out, err = io.StringIO(), io.StringIO()
    moved = []
    for logger in list(instance_table(MMLogger).values()):
        for h in logger.handlers:
            if type(h) is logging.StreamHandler and h.stream in (sys.stdout, sys.__stdout__):
                moved.append((h, h.setStream(out)))
    from mmengine.utils import ProgressBar  # its file= default is the sys.stdout of import time
    defaults = ProgressBar.__init__.__defaults__
    ProgressBar.__init__.__defaults__ = defaults[:-1] + (out,)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        ProgressBar.__init__.__defaults__ = defaults
        for h, stream in moved:
            h.setStream(stream)


@contextlib.contextmanager
def _process_state():
    """What a tool leaves in the process and a fresh process would not carry on: MMEngine's named instances
    (loggers, visualizers, message hubs, default scopes: a Runner names them after the config and the second
    it started, so two runs in one second would share them), work-dir locks (released at exit), the working
    directory, sys.argv and sys.path."""
    from mmengine.visualization import Visualizer

    from backbones.engine import mmengine_fixes
    # Visualizers made earlier in this process (a Runner built by a test itself) are set aside for the call:
    # the configs name theirs 'visualizer', and MMEngine would hand the run the earlier one, whose save_dir
    # (--show-dir) is another run's. A fresh process starts with none.
    tables = {id(instance_table(c)): instance_table(c) for c in manager_classes() if issubclass(c, Visualizer)}
    held = set_aside(tables.values())
    before = {cls: set(instance_table(cls)) for cls in manager_classes()}
    locks = set(mmengine_fixes._LOCKS)
    cwd, argv, path = os.getcwd(), sys.argv[:], sys.path[:]
    try:
        yield
    finally:
        for cls in manager_classes():
            for name in set(instance_table(cls)) - before.get(cls, set()):
                inst = instance_table(cls).pop(name)
                if callable(getattr(inst, 'close', None)):  # a visualizer: its TensorBoard writer's file
                    try:
                        inst.close()
                    except Exception:
                        pass
                for h in getattr(inst, 'handlers', [])[:]:
                    if isinstance(h, logging.FileHandler):
                        h.close()
                        inst.removeHandler(h)
        held.restore()
        for key in set(mmengine_fixes._LOCKS) - locks:
            mmengine_fixes._LOCKS.pop(key).close()
        os.chdir(cwd)
        sys.argv[:], sys.path[:] = argv, path


class ToolOutput(str):
    """stdout + stderr of a tool run (as ``run`` returns them), with ``stdout`` and ``stderr`` apart."""
    stdout: str
    stderr: str


def tool(script, *args, expect=0, env=None) -> ToolOutput:
    """Runs a tool in this process, as ``python SCRIPT ARGS`` from the repo root would (as ``__main__``, so
    its ``run_cli`` turns bad input into one ``error:`` line and exit 2; an uncaught exception is printed
    with its traceback and exits 1); asserts the exit code; returns stdout + stderr.

    It saves a fresh interpreter's imports (torch, mmdet, mmseg: 10-30 s a run on 2 cores); ``run`` stays
    where the process boundary is the point (signals, torchrun, a fresh interpreter, the malloc re-exec).
    As in a fresh process: torch's intra-op threads are a fresh process's (or ``OMP_NUM_THREADS``), the
    run's MMEngine instances and work-dir locks are dropped after it. ``env`` is set for the call;
    malloc_env's re-exec is skipped (INCEPTIONNEXT_MALLOC=default: glibc reads its settings at start-up)."""
    import runpy
    path = script if os.path.isabs(script) else os.path.join(REPO, script)
    env = {'INCEPTIONNEXT_MALLOC': 'default', **(env or {})}
    old_env = {k: os.environ.get(k) for k in env}
    old_threads = torch.get_num_threads()
    code = 0
    with _process_state(), _redirected_output() as (out, err):
        os.environ.update(env)
        torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS') or FRESH_PROCESS_THREADS))
        os.chdir(REPO)
        sys.argv[:] = [script, *map(str, args)]
        sys.path.insert(0, os.path.dirname(path))
        try:
            runpy.run_path(path, run_name='__main__')
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except Exception:  # what the interpreter would print and exit with
            traceback.print_exc()
            code = 1
        finally:
            torch.set_num_threads(old_threads)
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    text = ToolOutput(out.getvalue() + err.getvalue())
    text.stdout, text.stderr = out.getvalue(), err.getvalue()
    assert code == expect, f'exit {code} (expected {expect}):\n{text[-4000:]}'
    return text


def load_tool(rel: str):
    spec = importlib.util.spec_from_file_location('tool_' + re.sub(r'\W', '_', rel), osp.join(TOOLS, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # (the __main__ block does not run)
    return module


def run_in_process(rel: str, argv, light: bool = False):
    """``run_cli(lambda: main(argv))`` as the tool's ``__main__`` runs it (``sys.exit(main(argv))`` for the
    ``light`` tools): (exit code, stderr); an exception that escapes is what a user would see as a traceback, so
    it is returned as one."""
    module = load_tool(rel)
    err = io.StringIO()
    code = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            if light:
                sys.exit(module.main(argv))
            run_cli(lambda: module.main(argv))
        except SystemExit as e:
            code = e.code
        except BaseException:  # noqa: BLE001 -- the leak under test
            err.write(traceback.format_exc())
            code = 1
    return code, err.getvalue()

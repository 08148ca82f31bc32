import contextlib
import io
import logging
import os
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# torch's OpenMP threads spin-wait by default: 30-50x slower when another process holds a core.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
# pytest-xdist (setup.cfg: -n 2): each worker, and the processes its tests start, gets an equal share of the
# cores (1 thread on 2 cores); two workers of 2 threads each would fight over OpenMP's barriers. Set before
# torch is imported, so this process's torch starts with it too.
XDIST_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT') or 1)
if XDIST_WORKERS > 1:
    os.environ.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // XDIST_WORKERS)))

import pytest  # noqa: E402
import torch  # noqa: E402

FRESH_PROCESS_THREADS = torch.get_num_threads()  # what a tool started as a subprocess gets
# Two cores: keep intra-op threads at the machine's size (this worker's share), results deterministic per test.
torch.set_num_threads(max(1, min(2, FRESH_PROCESS_THREADS)))


def randomise_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics and affine terms and layer scales of ~0.75 (timm's or ours): so that
    eval-mode normalisation and folding are really compared, and the blocks' (1e-6-scaled) branches count."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
        if isinstance(getattr(m, 'gamma', None), torch.nn.Parameter):
            m.gamma.data.uniform_(0.5, 1.0)
    return model


def subprocess_env(extra=None) -> dict:
    """The environment of the tools the tests start: ours, plus the repo root on the path so that test
    configs can import test helpers (tests.helpers.kill_hook), plus ``extra``."""
    path = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH')) if p)
    return {**os.environ, 'PYTHONPATH': path, **(extra or {})}


def free_ports(n: int = 1) -> list:
    """``n`` distinct TCP ports free on 127.0.0.1 now, for torchrun's store (``PORT`` of tools/dist_train.sh):
    asked of the OS, not derived from the process id, so tests on two xdist workers never pick the same one."""
    import socket
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def signal_group_when(cmd, pattern: str, sig, env=None, terminal: bool = False):
    """Starts ``cmd`` (from the repo root) in its own process group, sends ``sig`` to the whole group once a
    line of its output matches ``pattern`` (or after 10 minutes), returns (exit code, output). ``terminal``:
    SIGINT at its default, as a terminal's foreground job has it."""
    import re
    import signal
    import subprocess
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if terminal else None
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env({'PYTHONUNBUFFERED': '1', **(env or {})}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=preexec)
    lines = []
    try:
        deadline = time.time() + 600
        for line in proc.stdout:
            lines.append(line)
            if re.search(pattern, line) or time.time() > deadline:
                break
        os.killpg(proc.pid, sig)
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, ''.join(lines) + rest


def run(cmd, expect=0, env=None, timeout=900) -> str:
    """Runs a command in the repo root; asserts its exit code, returns stdout + stderr."""
    import subprocess
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=subprocess_env(env))
    out = r.stdout + r.stderr
    assert r.returncode == expect, f'exit {r.returncode} (expected {expect}):\n{out[-4000:]}'
    return out


@contextlib.contextmanager
def _redirected_output():
    """stdout and stderr of the Python code run inside, as two StringIO objects (never closed: a logger made
    inside keeps writing to its stream after the run, harmlessly). MMEngine loggers made before the run
    (print_log's 'current' instance) write there too for the time of the run."""
    from mmengine.logging import MMLogger
    out, err = io.StringIO(), io.StringIO()
    moved = []
    for logger in list(MMLogger._instance_dict.values()):
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


def _manager_classes():
    from mmengine.utils import ManagerMixin
    todo, seen = [ManagerMixin], []
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


class _set_aside:
    """Empties MMEngine instance tables (``ManagerMixin._instance_dict``), remembering what they held;
    ``restore()`` puts those entries back (entries made in between stay unless removed by the caller)."""

    def __init__(self, tables):
        self._saved = [(t, dict(t)) for t in tables]
        for t, _ in self._saved:
            t.clear()

    def restore(self) -> None:
        for t, held in self._saved:
            t.update(held)


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
    tables = {id(c._instance_dict): c._instance_dict for c in _manager_classes() if issubclass(c, Visualizer)}
    set_aside = _set_aside(tables.values())
    before = {cls: set(cls._instance_dict) for cls in _manager_classes()}
    locks = set(mmengine_fixes._LOCKS)
    cwd, argv, path = os.getcwd(), sys.argv[:], sys.path[:]
    try:
        yield
    finally:
        for cls in _manager_classes():
            for name in set(cls._instance_dict) - before.get(cls, set()):
                inst = cls._instance_dict.pop(name)
                if callable(getattr(inst, 'close', None)):  # a visualizer: its TensorBoard writer's file
                    try:
                        inst.close()
                    except Exception:
                        pass
                for h in getattr(inst, 'handlers', [])[:]:
                    if isinstance(h, logging.FileHandler):
                        h.close()
                        inst.removeHandler(h)
        set_aside.restore()
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


@pytest.fixture(scope='module', autouse=True)
def _own_default_scope():
    """Each test file starts with no MMEngine default scope, as a fresh process would, and leaves none behind.
    A Runner built by a test itself (not through ``tool``) makes its scope the current one for the rest of
    the process ('mmengine' for a config without ``default_scope``); a later file's ``train_cls`` builds would
    then look in the wrong registries. Which files share a process depends on pytest-xdist's scheduling."""
    from mmengine.registry import DefaultScope
    set_aside = _set_aside([DefaultScope._instance_dict])
    yield
    DefaultScope._instance_dict.clear()
    set_aside.restore()


def single_torch_thread():
    """Fixture body (test modules wrap it, module-scoped and autouse): one torch thread. Small tensors gain
    nothing from a second thread, and on a busy 2-core machine OpenMP's barriers make 2 threads many times
    slower (measured: the accumulation test 0.7 s with 1 thread, 44 s with 2)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def mmdet_registered():
    """mmdet's modules registered (the detection test modules use it autouse) and ours imported."""
    import mmdet.utils
    mmdet.utils.register_all_modules(init_default_scope=False)
    import backbones  # noqa: F401


class LogCapture(logging.Handler):
    """What MMEngine's current logger prints (``print_log(..., logger='current')``), as ``text``; a context
    manager."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    @property
    def text(self) -> str:
        return '\n'.join(r.getMessage() for r in self.records)

    def warnings(self):
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]

    def __enter__(self):
        from mmengine.logging import MMLogger
        self._logger = MMLogger.get_current_instance()
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)


# ------------------------------------------------------------------------------------------------
# Time report at the end of every run (setup.cfg's addopts add pytest's own --durations=10)
# ------------------------------------------------------------------------------------------------
def pytest_sessionstart(session):
    session.config._suite_t0 = time.time()


# The heaviest files first, in the order pytest-xdist's file scheduler (--dist loadfile) hands them out: it
# gives each of the 2 workers 3 files to start with (the first three to one, the next three to the other),
# then one file at a time to whichever is free. Measured per-file seconds (2-core Xeon, one process) in brackets;
# the two opening hands are about equal, the light files fill the gaps at the end.
HEAVY_FIRST = ['test_det_train.py',        # [260] Mask R-CNN learns           worker 1
               'test_ecosystem.py',        # [124] inferencers, mim, ONNX      worker 1
               'test_fast_block.py',       # [ 82] Triton interpreter, bench   worker 1
               'test_seg.py',              # [219] UperNet learns, FLOPs        worker 2
               'test_tools.py',            # [110] train / resume / DDP        worker 2
               'test_cls_end_to_end.py',   # [108] 2-process classifier        worker 2
               'test_triton_compile.py', 'test_onnx.py', 'test_save_on_signal_hook.py', 'test_backbone.py',
               'test_deploy_and_benchmark.py', 'test_timm_export.py', 'test_engine.py']


def pytest_collection_modifyitems(session, config, items):
    """Heaviest files first (``HEAVY_FIRST``), the rest as collected; tests keep their order in a file."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))


@pytest.hookimpl(trylast=True)  # after pytest's own --durations list: the last lines of a run
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Seconds per test file (setup + call + teardown, module fixtures included) and the wall time of the
    whole run: the numbers docs/testing.md budgets."""
    per_file, tests = {}, set()
    for reports in terminalreporter.stats.values():
        for r in reports:
            if getattr(r, 'when', None) in ('setup', 'call', 'teardown') and hasattr(r, 'duration'):
                f = r.nodeid.split('::')[0]
                per_file[f] = per_file.get(f, 0.0) + r.duration
                tests.add(r.nodeid)
    if not per_file:
        return
    wall = time.time() - getattr(config, '_suite_t0', time.time())
    tw = terminalreporter
    tw.write_sep('-', 'seconds per test file (setup + call + teardown)')
    for f, s in sorted(per_file.items(), key=lambda kv: -kv[1]):
        tw.write_line(f'{s:8.1f}  {f}')
    lane = config.getoption('markexpr') or 'all tests'
    workers = getattr(config.option, 'numprocesses', None) or 0
    tw.write_line(f'suite time: {wall:.0f} s wall ({wall / 60:.1f} min) for {len(tests)} tests [{lane}], '
                  f'{os.cpu_count()} CPUs, {workers or "no"} xdist workers, load average {os.getloadavg()[0]:.1f}')

"""What every test needs: torch's threads set before torch is imported, no MMEngine default scope
carried from one test file to the next, the heaviest files scheduled first and a time report at the end.
Helpers shared by some folders are in tests/helpers/, fixtures in the conftest.py of the folders that use them."""
import os
import time

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

from tests.helpers.mmengine_state import instance_table, set_aside  # noqa: E402

FRESH_PROCESS_THREADS = torch.get_num_threads()  # what a tool started as a subprocess gets
# Two cores: keep intra-op threads at the machine's size (this worker's share), results deterministic per test.
torch.set_num_threads(max(1, min(2, FRESH_PROCESS_THREADS)))


@pytest.fixture(scope='module', autouse=True)
def _own_default_scope():
    """Each test file starts with no MMEngine default scope, as a fresh process would, and leaves none behind.
    A Runner built by a test itself (not through ``tool``) makes its scope the current one for the rest of
    the process ('mmengine' for a config without ``default_scope``); a later file's ``train_cls`` builds would
    then look in the wrong registries. Which files share a process depends on pytest-xdist's scheduling."""
    from mmengine.registry import DefaultScope
    held = set_aside([instance_table(DefaultScope)])
    yield
    instance_table(DefaultScope).clear()
    held.restore()


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
               'test_triton_compile.py', 'test_onnx.py', 'test_nonfinite_loss_hook.py', 'test_dist_scripts.py',
               'test_save_on_signal_hook.py', 'test_backbone.py', 'test_deploy_and_benchmark.py',
               'test_timm_export.py', 'test_setup_env.py', 'test_mmengine_fixes.py']


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

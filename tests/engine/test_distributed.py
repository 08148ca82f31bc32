"""The process group's start (backbones/engine/distributed.py): a group that does not form fails fast with one
line, instead of gloo's half-hour wait."""
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO
from tests.helpers.processes import free_port, subprocess_env

PY = sys.executable


@pytest.mark.slow  # a subprocess
def test_a_process_group_that_does_not_form_fails_fast_with_one_line():
    """Rank 0 of 2 with no rank 1 (what a restarted group that cannot re-form looks like to a process): one
    line and exit 2 after DIST_START_TIMEOUT, instead of gloo's half-hour wait."""
    port = free_port()
    env = subprocess_env({'RANK': '0', 'WORLD_SIZE': '2', 'LOCAL_RANK': '0', 'MASTER_ADDR': '127.0.0.1',
                          'MASTER_PORT': str(port), 'DIST_START_TIMEOUT': '3',
                          'TORCHELASTIC_RESTART_COUNT': '1'})
    code = ('from backbones.engine.mmengine_fixes import start_process_group_or_fail as s; s(); '
            'print("formed")')
    t0 = time.time()
    r = subprocess.run([PY, '-c', code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and time.time() - t0 < 60, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        'error: process 0 of 2: the process group did not form within 3 s (DIST_START_TIMEOUT) at '
        f'127.0.0.1:{port}; '
        'a process missing, or another MASTER_ADDR / PORT; torchrun restart 1: the restarted group could not '
        're-form; run the same command again, it resumes from the last checkpoint']

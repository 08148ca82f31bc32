"""tools/setup_env.sh: each checkout gets its own .venv over the cached stack."""
import os

import pytest

from tests.helpers import REPO


@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO, '.venv', '.stack')),
                    reason='needs a checkout set up by tools/setup_env.sh')
@pytest.mark.slow
def test_each_checkout_imports_its_own_backbones(tmp_path):
    """A second clone set up with tools/setup_env.sh (reusing the cached stack) gets its own .venv: each
    checkout's python imports its own backbones, from any folder, and deleting the clone breaks nothing."""
    import shutil
    import subprocess

    from tests.helpers import REPO
    clone = tmp_path / 'clone'
    subprocess.run(['git', 'clone', '-q', REPO, str(clone)], check=True, timeout=120)
    r = subprocess.run(['bash', 'tools/setup_env.sh'], cwd=clone, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and 'reusing the stack' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]

    def where(root):
        code = 'import backbones, os; print(os.path.dirname(os.path.dirname(os.path.realpath(backbones.__file__))))'
        out = subprocess.run([os.path.join(root, '.venv', 'bin', 'python'), '-c', code], cwd='/',
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    assert where(str(clone)) == os.path.realpath(clone)
    assert where(REPO) == os.path.realpath(REPO)
    shutil.rmtree(clone)
    assert where(REPO) == os.path.realpath(REPO)

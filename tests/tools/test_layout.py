"""tools/ holds what a user runs; the tools reach their helpers (tools/launch/) by import, never through a link,
and every file a shell tool names under the checkout (``$ROOT/...``) exists."""
import os
import os.path as osp
import re

from tests.helpers import REPO

TOOLS = osp.join(REPO, 'tools')


def links(root):
    """The symbolic links under ``root``, relative to it."""
    return sorted(osp.relpath(osp.join(d, f), root) for d, dirs, files in os.walk(root)
                  for f in files + dirs if osp.islink(osp.join(d, f)))


def missing_named_files(script, root=REPO):
    """The ``$ROOT/...`` paths a shell script names that do not exist under ``root`` (the checkout's .venv,
    which the setup script makes, left aside)."""
    with open(script) as f:
        named = set(re.findall(r'\$ROOT/([\w./-]*[\w])', f.read()))
    return sorted(p for p in named if not p.startswith('.venv') and not osp.exists(osp.join(root, p)))


def test_tools_hold_no_links():
    """A link breaks where a copy does not keep it, and a regular install copies the file behind it."""
    assert links(TOOLS) == []


def test_shell_tools_name_files_that_exist():
    scripts = sorted(osp.join(d, f) for d, _, files in os.walk(TOOLS) for f in files if f.endswith('.sh'))
    assert any(s.endswith('setup_env.sh') for s in scripts)
    assert {osp.relpath(s, REPO): missing_named_files(s) for s in scripts} == {osp.relpath(s, REPO): []
                                                                                for s in scripts}


def test_the_layout_checks_find_what_they_look_for(tmp_path):
    """Controls: a link and a script naming a file that is gone are reported."""
    (tmp_path / 'launch').mkdir()
    (tmp_path / 'launch' / 'helper.py').write_text('')
    os.symlink('../launch/helper.py', tmp_path / 'helper.py')
    assert links(str(tmp_path)) == ['helper.py']
    script = tmp_path / 'run.sh'
    script.write_text('exec "$PYTHON" "$ROOT/launch/helper.py" "$ROOT/launch/gone.py" "$ROOT/.venv/bin/python"\n')
    assert missing_named_files(str(script), root=str(tmp_path)) == ['launch/gone.py']

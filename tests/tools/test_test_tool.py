"""tools/test.py: its --out file is checked before the checkpoint is read or any test work done."""
import os.path as osp

import pytest

from backbones.utils.errors import UserInputError
from tests.helpers import REPO
from tests.helpers.seg_data import SEG


def test_test_tool_checks_out_before_reading_the_checkpoint(tmp_path, monkeypatch):
    import importlib.util
    monkeypatch.syspath_prepend(osp.join(REPO, 'tools'))  # (tools/test.py imports tools/launch/malloc_env.py)
    spec = importlib.util.spec_from_file_location('tools_test', osp.join(REPO, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    monkeypatch.chdir(tmp_path)
    # the checkpoint does not exist either: the --out error comes first, before any test work
    with pytest.raises(UserInputError, match=r'--out /proc/nope/out.pkl: cannot write to the folder '
                                             r'/proc/nope .*the test was not run'):
        test_tool.main([SEG, 'missing.pth', '--out', '/proc/nope/out.pkl'])
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(UserInputError, match='cannot write to the folder'):
        test_tool.check_out_file(str(blocker / 'out.pkl'))
    assert test_tool.check_out_file('~/x.pkl') == osp.expanduser('~/x.pkl')

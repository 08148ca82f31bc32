"""The tools' shared command line (backbones/utils/cli.py): ``--cfg-options`` values keep their spaces and
expand ``~``; the control: MMEngine's ``DictAction`` drops the space."""
import argparse
import os.path as osp

import pytest
from mmengine.config import DictAction


def test_cfg_options_keep_spaces_and_expand_home():
    from backbones.utils.cli import add_common_args
    p = argparse.ArgumentParser()
    add_common_args(p)
    args = p.parse_args(['--cfg-options', 'data_root=/tmp/my data/x', 'a.b=[1, 2]', 'c=(3,4)', 'd=~/w',
                         'e=1e-3', "f='x y'", 'g=None', 'h=True', 'i=a,b c'])
    assert args.cfg_options == {'data_root': '/tmp/my data/x', 'a.b': [1, 2], 'c': (3, 4),
                                'd': osp.expanduser('~/w'), 'e': 1e-3, 'f': 'x y', 'g': None, 'h': True,
                                'i': ['a', 'b c']}
    with pytest.raises(SystemExit):
        p.parse_args(['--cfg-options', 'novalue'])
    # the control: MMEngine's DictAction drops the space
    q = argparse.ArgumentParser()
    q.add_argument('--o', nargs='+', action=DictAction)
    assert q.parse_args(['--o', 'data_root=/tmp/my data/x']).o == {'data_root': '/tmp/mydata/x'}

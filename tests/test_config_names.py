"""The names of configs/: one scheme for every leaf, and the control that other orders do not pass."""
import os
import re

import pytest

# {algorithm}_{backbone}[_{component}...]_{schedule}_{dataset}.py, each part from its own vocabulary, in this
# order (OpenMMLab's scheme; words inside a part joined by '-'; classification leaves have no algorithm part,
# as in mmpretrain).
CONFIG_NAME = re.compile(
    r'(?:(?P<algorithm>(?!inceptionnext|convnext)[a-z][a-z0-9]*(?:-[a-z0-9]+)*)_)?'
    r'(?P<backbone>(?:inceptionnext|convnext)-[a-z0-9-]+)'
    r'(?P<components>(?:_(?:fpn|[0-9]+conv[0-9]+fc(?:-[a-z]+)?))*)'
    r'_(?P<schedule>(?:[0-9]+xb[0-9]+-)?(?:[a-z]+(?:-[a-z]+)*-)?[0-9]+(?:k|e|x|iter)|eval)'
    r'_(?P<dataset>(?:synthetic-)?(?:coco|ade20k|ade|in1k)(?:-[0-9]+(?:x[0-9]+|px))?)\.py')


def test_config_names_follow_one_scheme():
    """Every leaf is named {algorithm}_{backbone}[_{component}...]_{schedule}_{dataset} (CONFIG_NAME),
    every one loads, and configs/upernet_inceptionnext_t.py stays the documented short name of UperNet-T."""
    import glob

    from mmengine.config import Config

    from tests.helpers import REPO
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, 'configs', '*.py')))
    odd = [n for n in names if n != 'upernet_inceptionnext_t.py' and not CONFIG_NAME.fullmatch(n)]
    assert not odd, odd
    for n in names:
        Config.fromfile(os.path.join(REPO, 'configs', n))
    assert Config.fromfile(os.path.join(REPO, 'configs', 'upernet_inceptionnext_t.py')).model.backbone.arch == 'tiny'


@pytest.mark.parametrize('name', [
    'mask-rcnn_inceptionnext-t_fpn_coco_1x.py',  # dataset before schedule
    'inceptionnext-t_mask-rcnn_fpn_1x_coco.py',  # backbone before algorithm
    'mask-rcnn_fpn_inceptionnext-t_1x_coco.py',  # component before backbone
    'upernet_inceptionnext-t_ade20k-512x512_8xb2-160k.py',
    'upernet_inceptionnext-t_8xb2-160k.py',  # no dataset
    'inceptionnext-t_in1k.py',  # no schedule
    'upernet_inceptionnext-t_8xb2_160k_ade20k.py',  # a part split by '_'
])
def test_config_name_scheme_refuses_other_orders(name):
    """The control: names with the parts in another order, or a part missing, do not pass."""
    assert not CONFIG_NAME.fullmatch(name)

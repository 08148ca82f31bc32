"""The synthetic-ADE UperNet-atto config (``SEG``) on a small generated ADE set: the ``seg_cfg`` fixture
(the set's root and the loaded config; module-scoped, imported by the conftests of the folders that use it) and
``_seg_opts`` (the ``--cfg-options`` that point every split at a root)."""
import os.path as osp

import pytest

from tests.helpers import REPO

SEG = osp.join(REPO, 'configs', 'upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py')


@pytest.fixture(scope='module')
def seg_cfg(tmp_path_factory):
    from backbones.datasets.synthetic import write_ade
    root = str(tmp_path_factory.mktemp('ade'))
    write_ade(root, num_train=4, num_val=2, size=(64, 64), seed=2)
    from backbones.utils.config import load_config
    opts = {f'{s}_dataloader.dataset.data_root': root for s in ('train', 'val', 'test')}
    return root, load_config(SEG, opts)


def _seg_opts(root):
    return {f'{s}_dataloader.dataset.data_root': root for s in ('train', 'val', 'test')}

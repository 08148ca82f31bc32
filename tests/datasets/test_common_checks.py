"""The checks every data set gets (backbones/datasets/checks/common.py), through the pre-flight of
``backbones.apis.run``: dataloader values."""
import copy

import pytest
import torch

from backbones.utils.errors import UserInputError
from tests.helpers.logs import LogCapture


def test_dataloader_values_are_checked_before_the_runner(seg_cfg):
    from backbones.apis.run import preflight
    _, base = seg_cfg
    cfg = copy.deepcopy(base)
    cfg.train_dataloader.batch_size = 0
    with pytest.raises(UserInputError, match=r'train_dataloader.batch_size=0: a whole number .* >= 1'):
        preflight(cfg, splits=('train_dataloader',))
    cfg = copy.deepcopy(base)
    cfg.val_dataloader.num_workers = 0
    assert cfg.val_dataloader.persistent_workers  # the base's setting: torch's DataLoader refuses the pair
    with LogCapture() as log:
        preflight(cfg, splits=('train_dataloader', 'val_dataloader'))
    assert cfg.val_dataloader.persistent_workers is False
    assert 'val_dataloader.num_workers=0: persistent_workers set to False' in log.text
    with pytest.raises(ValueError, match='persistent_workers option needs num_workers > 0'):  # the control
        torch.utils.data.DataLoader([1], num_workers=0, persistent_workers=True)

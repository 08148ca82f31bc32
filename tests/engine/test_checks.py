"""The pre-flight checks of the model's values (backbones/engine/checks.py): backbone values out of range
are named with their key; the control shows where they failed without the check."""
import pytest
import torch
from mmengine.config import Config

from backbones.utils.errors import UserInputError


@pytest.mark.parametrize('key,value,msg', [
    ('out_indices', (0, 4), r'model.backbone.out_indices: out_indices \(0, 4\) out of range'),
    ('frozen_stages', 5, r'model.backbone.frozen_stages: frozen_stages=5 out of range'),
    ('drop_path_rate', 1.5, r'model.backbone.drop_path_rate: drop_path_rate=1.5 out of range: .* \[0, 1\)'),
    ('drop_path_rate', -0.1, r'model.backbone.drop_path_rate: drop_path_rate=-0.1 out of range'),
])
def test_backbone_values_out_of_range_are_named(key, value, msg):
    from backbones.engine.checks import check_backbone
    cfg = Config(dict(model=dict(backbone=dict(type='InceptionNeXt', arch='atto', **{key: value}))))
    with pytest.raises(UserInputError, match=msg):
        check_backbone(cfg)


def test_drop_path_rate_above_one_failed_only_in_training():
    """The control of the range check: stochastic depth with p = 1.5 is torch's bernoulli_ error at the first
    training step, naming no key."""
    from backbones.models.inceptionnext import InceptionNeXt
    with pytest.raises(ValueError, match='drop_path_rate'):
        InceptionNeXt('atto', drop_path_rate=1.5)
    with pytest.raises(RuntimeError, match='bernoulli'):
        torch.empty(2, 1, 1, 1).bernoulli_(1 - 1.5)

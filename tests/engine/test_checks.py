"""The pre-flight checks of the config's values (backbones/engine/checks.py): backbone values out of range
are named with their key (the control shows where they failed without the check); a scheduler without ``end``
that ends before it begins is named."""
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


def test_a_scheduler_without_end_that_ends_before_it_begins():
    """MMEngine gives a scheduler without ``end`` the loop's max_iters: shortening max_iters below its
    ``begin`` is named here, not a ValueError from inside the Runner."""
    from mmengine.config import Config

    from backbones.engine.checks import check_param_schedulers
    from backbones.utils.errors import BadValueError
    cfg = Config(dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=100),
                      param_scheduler=[dict(type='LinearLR', by_epoch=False, begin=0, end=50),
                                       dict(type='PolyLR', by_epoch=False, begin=500)]))
    with pytest.raises(BadValueError, match=r"^param_scheduler.1 \(PolyLR\): end=100 \(no end set: "
                                            r"train_cfg.max_iters\) is not after begin=500"):
        check_param_schedulers(cfg)
    cfg.train_cfg.max_iters = 1000
    check_param_schedulers(cfg)

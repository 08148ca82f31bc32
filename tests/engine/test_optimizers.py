"""InceptionNeXtLayerDecayConstructor (backbones/engine/optimizers.py): the layer ids, the groups it makes, and on the
detectors the lr and weight decay each parameter gets.

layer_wise ids (backbones/engine/optimizers.py): stem 0; stage 0 -> 1; stage 1 (and its downsample) -> 2; stage 2
block j -> 3 + j // 3 (its downsample 3); stage 3 (and its downsample) -> num_layers; everything else
(out norms, neck, heads) -> num_layers + 1. lr = base_lr * decay_rate ** (num_layers + 1 - id); no weight
decay on 1-D parameters (norms, layer scales) and biases.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from backbones.engine.mmengine_fixes import fallback_syncbn_on_cpu
from backbones.engine.optimizers import InceptionNeXtLayerDecayConstructor
from tests.helpers import REPO

pytestmark = pytest.mark.usefixtures('mmdet_registered')


def param_groups(name):
    """{parameter name: its optimizer param group} for a config's model and optim_wrapper."""
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    fallback_syncbn_on_cpu(cfg)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    by_id = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert set(by_id) == {id(p) for p in named.values()}  # every parameter in exactly one group
    assert sum(len(g['params']) for g in wrapper.optimizer.param_groups) == len(named)
    return cfg, {n: by_id[id(p)] for n, p in named.items()}


def check(groups, name, lr, wd):
    g = groups[name]
    assert g['lr'] == pytest.approx(lr, rel=1e-9), (name, g['lr'], lr)
    assert g['weight_decay'] == wd, (name, g['weight_decay'], wd)


def test_mask_rcnn_t_layer_wise_095_over_6_layers():
    cfg, groups = param_groups('mask-rcnn_inceptionnext-t_fpn_1x_coco.py')
    base, r, wd = 1e-4, 0.95, 0.05
    assert cfg.optim_wrapper.optimizer.lr == base
    check(groups, 'backbone.stem.conv.weight', base * r ** 7, wd)  # id 0
    check(groups, 'backbone.stem.norm.weight', base * r ** 7, 0.)
    check(groups, 'backbone.stages.0.blocks.2.mlp.fc1.weight', base * r ** 6, wd)  # id 1
    check(groups, 'backbone.stages.0.blocks.0.gamma', base * r ** 6, 0.)  # layer scale: no decay
    check(groups, 'backbone.stages.1.downsample.conv.weight', base * r ** 5, wd)  # id 2
    check(groups, 'backbone.stages.2.downsample.conv.weight', base * r ** 4, wd)  # id 3
    check(groups, 'backbone.stages.2.blocks.0.token_mixer.dwconv_hw.weight', base * r ** 4, wd)  # id 3
    check(groups, 'backbone.stages.2.blocks.8.token_mixer.dwconv_w.weight', base * r ** 2, wd)  # 3 + 8 // 3
    check(groups, 'backbone.stages.2.blocks.8.token_mixer.dwconv_w.bias', base * r ** 2, 0.)
    check(groups, 'backbone.stages.3.downsample.conv.weight', base * r, wd)  # id 6 = num_layers
    check(groups, 'backbone.stages.3.blocks.2.mlp.fc2.weight', base * r, wd)
    check(groups, 'backbone.out_norms.3.weight', base, 0.)  # id 7: the dense-task additions train at base lr
    check(groups, 'neck.lateral_convs.0.conv.weight', base, wd)
    check(groups, 'neck.fpn_convs.3.conv.bias', base, 0.)
    check(groups, 'rpn_head.rpn_conv.weight', base, wd)
    check(groups, 'roi_head.bbox_head.fc_cls.weight', base, wd)
    check(groups, 'roi_head.mask_head.conv_logits.bias', base, 0.)


def test_mask_rcnn_s_layer_wise_over_12_layers():
    _, groups = param_groups('mask-rcnn_inceptionnext-s_fpn_1x_coco.py')
    base, r, wd = 1e-4, 0.95, 0.05
    check(groups, 'backbone.stem.conv.weight', base * r ** 13, wd)
    check(groups, 'backbone.stages.2.blocks.26.mlp.fc1.weight', base * r ** 2, wd)  # id 3 + 26 // 3 = 11
    check(groups, 'backbone.stages.2.blocks.14.mlp.fc1.weight', base * r ** 6, wd)  # id 3 + 4 = 7
    check(groups, 'backbone.stages.3.blocks.0.mlp.fc1.weight', base * r, wd)  # id 12
    check(groups, 'neck.lateral_convs.3.conv.weight', base, wd)


def test_cascade_t_uses_the_cascade_recipe():
    _, groups = param_groups('cascade-mask-rcnn_inceptionnext-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py')
    base, r, wd = 2e-4, 0.7, 0.05
    check(groups, 'backbone.stem.conv.weight', base * r ** 7, wd)
    check(groups, 'backbone.stages.2.blocks.4.mlp.fc2.weight', base * r ** 3, wd)  # id 3 + 1
    check(groups, 'roi_head.bbox_head.2.shared_convs.0.conv.weight', base, wd)
    check(groups, 'roi_head.bbox_head.2.shared_convs.0.bn.weight', base, 0.)


def test_layer_decay_ids_follow_the_convnext_rule():
    from backbones import InceptionNeXt
    backbone = InceptionNeXt('atto')

    def layer_id(name, num_layers, decay_type):
        depth, total = backbone.get_layer_depth(name, 'backbone.', num_layers, decay_type)
        assert total == num_layers + 2
        return depth

    # stage-wise, 6 layers (UperNet recipe): stem/downsamples 0, stage i -> i + 1, rest 7
    assert layer_id('backbone.stem.conv.weight', 6, 'stage_wise') == 0
    assert layer_id('backbone.stages.2.downsample.conv.weight', 6, 'stage_wise') == 0
    assert layer_id('backbone.stages.3.blocks.1.mlp.fc1.weight', 6, 'stage_wise') == 4
    assert layer_id('backbone.out_norms.0.weight', 6, 'stage_wise') == 7
    assert layer_id('decode_head.conv_seg.weight', 6, 'stage_wise') == 7
    # layer-wise, 12 layers (detection S/B): stage 2 block j -> 3 + j // 3
    assert layer_id('backbone.stages.2.blocks.26.gamma', 12, 'layer_wise') == 11
    assert layer_id('backbone.stages.1.downsample.norm.weight', 12, 'layer_wise') == 2
    assert layer_id('backbone.stages.3.blocks.0.gamma', 12, 'layer_wise') == 12
    assert layer_id('neck.lateral_convs.0.conv.weight', 12, 'layer_wise') == 13
    with pytest.raises(ValueError, match="decay_type must be 'layer_wise' or 'stage_wise'"):
        layer_id('backbone.stem.conv.weight', 6, 'block_wise')


def test_layer_decay_constructor_groups():
    from backbones import InceptionNeXt

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = InceptionNeXt('atto')
            self.head = torch.nn.Conv2d(320, 4, 1)

    net = Net()
    ctor = InceptionNeXtLayerDecayConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)),
        dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
    groups = ctor(net).optimizer.param_groups
    by_param = {id(p): g for g in groups for p in g['params']}
    stem = by_param[id(net.backbone.stem.conv.weight)]
    assert stem['lr'] == pytest.approx(1e-4 * 0.9 ** 7) and stem['weight_decay'] == 0.05
    blk = by_param[id(net.backbone.stages[1].blocks[0].mlp.fc1.weight)]
    assert blk['lr'] == pytest.approx(1e-4 * 0.9 ** 5)
    assert by_param[id(net.head.weight)]['lr'] == pytest.approx(1e-4)
    assert by_param[id(net.head.bias)]['weight_decay'] == 0.0
    assert by_param[id(net.backbone.stages[0].blocks[0].gamma)]['weight_decay'] == 0.0
    assert sum(len(g['params']) for g in groups) == len(list(net.parameters()))

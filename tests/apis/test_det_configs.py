"""Every detection config: the recipe it states, built by mmdet's registry, and a real forward.

T-size (and atto) configs run one loss forward + backward on two small images; the S and B configs are built,
checked for structure, and run one predict forward at 64x64 (cheap on 2 cores).
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from backbones.engine.mmengine_fixes import fallback_syncbn_on_cpu
from tests.helpers import REPO

DET_CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(REPO, 'configs', '*rcnn*.py'))
                     + glob.glob(osp.join(REPO, 'configs', 'retinanet*.py')))
# issue #8: Mask R-CNN 1x and 3x and Cascade 3x for T/S/B, RetinaNet 1x for T, and the synthetic-data one
ISSUE_CONFIGS = {
    *(f'mask-rcnn_inceptionnext-{v}_fpn_1x_coco.py' for v in 'tsb'),
    *(f'mask-rcnn_inceptionnext-{v}_fpn_ms-crop-3x_coco.py' for v in 'tsb'),
    *(f'cascade-mask-rcnn_inceptionnext-{v}_fpn_4conv1fc-giou_ms-crop-3x_coco.py' for v in 'tsb'),
    'retinanet_inceptionnext-t_fpn_1x_coco.py', 'mask-rcnn_inceptionnext-atto_fpn_500iter_synthetic-coco.py'}
DIMS = {'atto': [40, 80, 160, 320], 'tiny': [96, 192, 384, 768], 'small': [96, 192, 384, 768],
        'base': [128, 256, 512, 1024]}
DEPTHS = {'atto': (2, 2, 6, 2), 'tiny': (3, 3, 9, 3), 'small': (3, 3, 27, 3), 'base': (3, 3, 27, 3)}
DROP_PATH = {'atto': 0.1, 'tiny': 0.4, 'small': 0.6, 'base': 0.7}  # ConvNeXt detection recipes (T, S, B)
RELEASE = 'https://github.com/sail-sg/inceptionnext/releases/download/model'  # the official ImageNet-1k files


pytestmark = pytest.mark.usefixtures('mmdet_registered')


def load(name, cpu=True):
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    if cpu:
        fallback_syncbn_on_cpu(cfg)  # as tools/train.py and tools/test.py do without a GPU
        cfg.model.backbone.init_cfg = None  # no pretrained file in the tests
    return cfg


def build(cfg):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model)


def test_issue_configs_exist():
    assert ISSUE_CONFIGS <= set(DET_CONFIGS), sorted(ISSUE_CONFIGS - set(DET_CONFIGS))


@pytest.mark.parametrize('name', DET_CONFIGS)
def test_recipe(name):
    cfg = load(name, cpu=False)
    bb = cfg.model.backbone
    arch = bb.arch
    assert cfg.default_scope == 'mmdet' and 'backbones' in cfg.custom_imports.imports
    assert any(h.type == 'RNGStateHook' for h in cfg.custom_hooks)
    assert cfg.visualizer.type == 'DetLocalVisualizer'
    assert [b.type for b in cfg.visualizer.vis_backends] == ['LocalVisBackend', 'TensorboardVisBackend']
    assert cfg.default_hooks.visualization.type == 'DetVisualizationHook'
    # backbone: four normed outputs (strides 4..32) into the FPN, SyncBN, pretrained file named by the leaf
    assert bb.type == 'InceptionNeXt' and tuple(bb.out_indices) == (0, 1, 2, 3) and bb.out_norm is True
    assert bb.norm_cfg.type == 'SyncBN' and bb.drop_path_rate == DROP_PATH[arch]
    assert bb.init_cfg == dict(type='Pretrained', checkpoint=f'{RELEASE}/inceptionnext_{arch}.pth')
    assert cfg.model.neck.type == 'FPN' and cfg.model.neck.in_channels == DIMS[arch]
    # optimizer: AdamW, wd 0.05, our layer-wise decay (6 layers for T, 12 for S/B)
    ow = cfg.optim_wrapper
    assert ow.optimizer.type == 'AdamW' and ow.optimizer.weight_decay == 0.05
    assert ow.constructor == 'InceptionNeXtLayerDecayConstructor'
    assert ow.paramwise_cfg.decay_type == 'layer_wise'
    assert ow.paramwise_cfg.num_layers == (12 if arch in ('small', 'base') else 6)
    if name.startswith('cascade'):  # mmdet's ConvNeXt cascade recipe
        assert (ow.optimizer.lr, ow.paramwise_cfg.decay_rate) == (2e-4, 0.7)
        assert cfg.model.roi_head.num_stages == 3 and all(
            h.type == 'ConvFCBBoxHead' and h.num_shared_convs == 4 and h.loss_bbox.type == 'GIoULoss'
            for h in cfg.model.roi_head.bbox_head)
    elif 'synthetic' in name:
        assert (ow.optimizer.lr, ow.paramwise_cfg.decay_rate) == (1e-3, 0.95)
        assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    else:  # mmdet's ConvNeXt Mask R-CNN recipe
        assert (ow.optimizer.lr, ow.paramwise_cfg.decay_rate) == (1e-4, 0.95)
    if '3x' in name:
        assert cfg.train_cfg.max_epochs == 36 and cfg.param_scheduler[1].milestones == [27, 33]
        pipeline = cfg.train_dataloader.dataset.pipeline
        assert any(t.type == 'RandomChoice' for t in pipeline)  # multi-scale + crop
    elif '1x' in name:
        assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[1].milestones == [8, 11]
    # data: mmdet's CocoDataset + CocoMetric; a Resize in the test pipeline (the mask head reads scale_factor)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[split].dataset.type == 'CocoDataset'
    assert any(t.type == 'Resize' for t in cfg.test_dataloader.dataset.pipeline)
    metrics = cfg.val_evaluator.metric
    assert cfg.val_evaluator.type == 'CocoMetric'
    assert ('segm' in metrics) == (cfg.model.type != 'RetinaNet') and 'bbox' in metrics


def _inputs(cfg, batch, size, with_mask):
    from mmdet.testing import demo_mm_inputs
    num_classes = (cfg.model.bbox_head.num_classes if cfg.model.type == 'RetinaNet'
                   else cfg.model.roi_head.mask_head.num_classes)
    torch.manual_seed(0)
    return demo_mm_inputs(batch_size=batch, image_shapes=(3, size, size), num_items=[3] * batch,
                          num_classes=num_classes, with_mask=with_mask)


def _check_structure(model, cfg):
    from backbones import InceptionNeXt
    arch = cfg.model.backbone.arch
    assert isinstance(model.backbone, InceptionNeXt)
    assert tuple(len(s.blocks) for s in model.backbone.stages) == DEPTHS[arch]
    assert set(model.backbone.out_norms.keys()) == {'0', '1', '2', '3'}
    # no classification head
    assert not any(n.startswith('backbone.head') for n, _ in model.named_parameters())
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())  # SyncBN -> BN on CPU
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.backbone.eval()(x)
    assert [f.shape[1] for f in feats] == DIMS[arch] and [f.shape[-1] for f in feats] == [16, 8, 4, 2]


TRAINED = [n for n in DET_CONFIGS if '-t_' in n or '-atto_' in n]
BUILT_ONLY = [n for n in DET_CONFIGS if n not in TRAINED]


@pytest.mark.parametrize('name', TRAINED)
def test_loss_forward_backward(name):
    cfg = load(name)
    rcnn = cfg.model.train_cfg.get('rcnn')
    for stage in (rcnn if isinstance(rcnn, list) else [rcnn] if rcnn else []):
        stage.sampler.num = 64  # 512 RoIs x 3 cascade stages of 4conv heads cost a minute on 2 cores
    model = build(cfg)
    model.init_weights()
    _check_structure(model, cfg)
    model.train()
    with_mask = cfg.model.type != 'RetinaNet'
    data = model.data_preprocessor(_inputs(cfg, 2, 128, with_mask), True)
    losses = model(**data, mode='loss')
    retina = cfg.model.type == 'RetinaNet'
    expected = {'loss_cls', 'loss_bbox'} if retina else {'loss_rpn_cls', 'loss_rpn_bbox'}
    assert expected <= set(losses), sorted(losses)
    if with_mask:
        assert any(k.endswith('loss_mask') for k in losses), sorted(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    # (not a block's weights: drop path 0.4 may skip a whole block for both images)
    for n in ('backbone.stem.conv.weight', 'backbone.stages.3.downsample.conv.weight',
              'backbone.out_norms.3.weight', 'neck.fpn_convs.0.conv.weight'):
        assert grads[n] is not None and grads[n].abs().sum() > 0, n


@pytest.mark.parametrize('name', BUILT_ONLY)
def test_build_and_predict_tiny(name):
    cfg = load(name)
    model = build(cfg)
    _check_structure(model, cfg)
    model.eval()
    data = model.data_preprocessor(_inputs(cfg, 1, 64, False), False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    pred = results[0].pred_instances
    assert pred.bboxes.shape[1] == 4 and len(pred.scores) == len(pred.labels) <= 100

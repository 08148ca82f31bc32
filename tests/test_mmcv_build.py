"""The mmcv 2.1.0 that tools/setup_env.sh compiles (tools/setup/mmcv_ops.py, tools/setup/mmcv_ops.txt; docs/setup.md).

By default only the ops the suite's models call are compiled (nms, roi_align). Here: those ops give
torchvision's results (an implementation this project did not write) on CPU, forward and backward; one
training step and one prediction of every detector and segmentor family of configs/ call exactly the compiled
ops recorded below and no other; an op left out raises an error naming it and the full build; mmcv.ops, mmdet
and mmseg import as with a full build. With a full build (INX_MMCV_OPS=all) the same tests check that the
left-out op runs instead.
"""
import os.path as osp
import re

import pytest
import torch
import torchvision

from tests.helpers import REPO
from tests.helpers.threads import single_torch_thread

mmcv_ops = pytest.importorskip('mmcv.ops')
from mmcv.utils import ext_loader  # noqa: E402

single_thread = pytest.fixture(scope='module', autouse=True)(single_torch_thread)

FULL_BUILD = not getattr(ext_loader, 'LEFT_OUT_FUNCTIONS', ())  # (an mmcv built elsewhere: full)
# The compiled functions of each op source of tools/setup/mmcv_ops.txt that the suite's models call.
CALLED_FUNCTIONS = {'nms': {'nms'}, 'roi_align': {'roi_align_forward', 'roi_align_backward'}}
# Every function the suite's build binds (the op sources' functions, and info.cpp's version queries).
SUITE_FUNCTIONS = {'get_compiler_version', 'get_compiling_cuda_version', 'nms', 'softnms', 'nms_match',
                   'roi_align_forward', 'roi_align_backward'}


def op_list():
    names = []
    with open(osp.join(REPO, 'tools', 'setup', 'mmcv_ops.txt')) as f:
        for line in f:
            name = line.split('#', 1)[0].strip()
            if name:
                names.append(name)
    return names


def compiled_functions():
    import mmcv._ext
    return {n for n in dir(mmcv._ext) if not n.startswith('_')}


def random_boxes(n, size=64.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = 4 + torch.rand(n, 2, generator=g) * size / 2
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


def test_the_build_holds_the_listed_ops():
    assert set(op_list()) == set(CALLED_FUNCTIONS)
    if FULL_BUILD:
        assert SUITE_FUNCTIONS < compiled_functions() and len(compiled_functions()) > 100
    else:
        assert ext_loader.BUILT_SOURCES == tuple(sorted(set(op_list()) | {'info', 'pybind'}))
        assert compiled_functions() == SUITE_FUNCTIONS
        assert not SUITE_FUNCTIONS & ext_loader.LEFT_OUT_FUNCTIONS
        assert {'box_iou_rotated', 'carafe_forward', 'deform_conv_forward'} <= ext_loader.LEFT_OUT_FUNCTIONS


@pytest.mark.parametrize('iou', [0.3, 0.7])
def test_nms_equals_torchvision(iou):
    boxes, scores = random_boxes(300)
    dets, keep = mmcv_ops.nms(boxes, scores, iou)
    ref = torchvision.ops.nms(boxes, scores, iou)
    assert 20 < len(ref) < 300  # boxes really were suppressed, and some kept
    assert keep.tolist() == ref.tolist()
    torch.testing.assert_close(dets, torch.cat([boxes[ref], scores[ref, None]], 1))


def test_batched_nms_equals_torchvision():
    """mmcv.ops.batched_nms (what mmdet's RPN, RetinaNet and RoI heads call) per class, as torchvision's."""
    boxes, scores = random_boxes(400, seed=1)
    labels = torch.randint(0, 5, (400,), generator=torch.Generator().manual_seed(2))
    dets, keep = mmcv_ops.batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=0.5))
    ref = torchvision.ops.batched_nms(boxes, scores, labels, 0.5)
    assert keep.tolist() == ref.tolist()
    assert len(ref) > len(torchvision.ops.nms(boxes, scores, 0.5))  # the classes really were apart


@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_roi_align_equals_torchvision_forward_and_backward(sampling_ratio):
    """mmcv's RoIAlign as mmdet's RoI extractors build it (aligned, average) against torchvision's
    roi_align(aligned=True): outputs and input gradients."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 24, 32, generator=g, dtype=torch.float64)
    boxes, _ = random_boxes(40, size=100.0, seed=3)
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=g).double(), boxes.double()], 1)
    x1 = feats.clone().requires_grad_()
    x2 = feats.clone().requires_grad_()
    layer = mmcv_ops.RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=sampling_ratio)
    assert layer.aligned and layer.pool_mode == 'avg'
    out = layer(x1, rois)
    ref = torchvision.ops.roi_align(x2, rois, (7, 7), 0.25, sampling_ratio, aligned=True)
    torch.testing.assert_close(out, ref)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    assert x2.grad.abs().sum() > 0
    torch.testing.assert_close(x1.grad, x2.grad)


def test_op_left_out_raises_a_clear_error():
    """box_iou_rotated (rotated boxes: mmrotate's, never called by mmdet or mmseg) is not compiled by
    default: calling it names the op, the caller and the full build; the full build computes it."""
    boxes = torch.tensor([[10., 10., 8., 4., 0.3], [20., 20., 6., 6., 0.]])
    if FULL_BUILD:
        torch.testing.assert_close(mmcv_ops.box_iou_rotated(boxes, boxes, aligned=True), torch.ones(2))
        return
    with pytest.raises(ext_loader.OpNotBuiltError) as e:
        mmcv_ops.box_iou_rotated(boxes, boxes, aligned=True)
    msg = str(e.value)
    assert 'mmcv op box_iou_rotated (called by mmcv.ops.box_iou_rotated) is not compiled' in msg
    assert 'INX_MMCV_OPS=all bash tools/setup_env.sh' in msg and 'nms, roi_align' in msg
    assert isinstance(e.value, NotImplementedError)


def test_mmcv_loader_still_refuses_a_missing_function():
    """Only the functions recorded as left out become errors at call time: any other missing function still
    fails mmcv's own check at import."""
    with pytest.raises(AssertionError, match='no_such_function miss in module _ext'):
        ext_loader.load_ext('_ext', ['nms', 'no_such_function'])
    assert ext_loader.load_ext('_ext', ['nms']).nms is not None


def test_mmcv_ops_mmdet_and_mmseg_import_in_full():
    for name in mmcv_ops.__all__:
        assert getattr(mmcv_ops, name) is not None, name
    import mmdet.models  # noqa: F401  (every detector module, and the mmcv.ops layers they import)
    import mmseg.models  # noqa: F401
    from mmdet.registry import MODELS
    assert MODELS.get('MaskRCNN') and MODELS.get('CascadeRCNN') and MODELS.get('RetinaNet')


class Recorder:
    """Stands for one mmcv.ops module's ``ext_module``: records the compiled functions looked up on it."""

    def __init__(self, ext, calls):
        self._ext, self._calls = ext, calls

    def __getattr__(self, name):
        self._calls.add(name)
        return getattr(self._ext, name)


@pytest.fixture
def ext_calls(monkeypatch):
    import sys
    calls = set()
    for name, module in list(sys.modules.items()):
        if name.startswith('mmcv.ops.') and hasattr(module, 'ext_module'):
            monkeypatch.setattr(module, 'ext_module', Recorder(module.ext_module, calls))
    return calls


# Fewer proposals and sampled RoIs (a CPU-sized step; the same code paths), and every box kept in prediction
# (score_thr 0) so that the mask heads and the last NMS see real work.
TWO_STAGE = {'model.train_cfg.rpn_proposal.max_per_img': 64, 'model.test_cfg.rpn.max_per_img': 64,
             'model.test_cfg.rcnn.score_thr': 0.0, 'model.test_cfg.rcnn.max_per_img': 20}
DET_FAMILIES = {  # config: (options, the compiled functions called)
    'mask-rcnn_inceptionnext-atto_fpn_500iter_synthetic-coco.py': (
        {**TWO_STAGE, 'model.train_cfg.rcnn.sampler.num': 32},
        {'nms', 'roi_align_forward', 'roi_align_backward'}),
    'cascade-mask-rcnn_inceptionnext-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py': (
        {**TWO_STAGE, **{f'model.train_cfg.rcnn.{i}.sampler.num': 32 for i in range(3)}},
        {'nms', 'roi_align_forward', 'roi_align_backward'}),
    'retinanet_inceptionnext-t_fpn_1x_coco.py': (
        {'model.test_cfg.score_thr': 0.0, 'model.test_cfg.max_per_img': 20}, {'nms'}),
}
SEG_FAMILIES = ['upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py',
                'fpn_inceptionnext-t_8xb2-80k_ade20k-512x512.py']


def num_classes_of(detector):
    if hasattr(detector, 'roi_head'):
        head = detector.roi_head.bbox_head
        return (head[0] if isinstance(head, torch.nn.ModuleList) else head).num_classes
    return detector.bbox_head.num_classes


@pytest.mark.parametrize('config', list(DET_FAMILIES))
def test_detector_step_and_prediction_call_only_the_built_ops(config, ext_calls):
    """One training step (loss, backward) and one prediction of each detector family: the compiled functions
    called are exactly those recorded."""
    from mmdet.testing import demo_mm_inputs

    from backbones.apis.build import build_model
    options, expected = DET_FAMILIES[config]
    torch.manual_seed(0)
    model = build_model(osp.join(REPO, 'configs', config), options, scope='mmdet')
    data = demo_mm_inputs(2, [(3, 96, 128)] * 2, num_items=[3, 2], num_classes=num_classes_of(model),
                          with_mask=True)
    model.train()
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    total.backward()
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(data, False), mode='predict')
    assert len(results[0].pred_instances) > 0
    assert ext_calls == expected
    assert expected <= compiled_functions()


@pytest.mark.parametrize('config', SEG_FAMILIES)
def test_segmentor_step_and_prediction_call_no_compiled_op(config, ext_calls):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from backbones.apis.build import build_model
    torch.manual_seed(0)
    model = build_model(osp.join(REPO, 'configs', config), {'model.data_preprocessor.size': (64, 64)},
                        scope='mmseg')
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, 64, 64)))
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)
    model.train()
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(data, False), mode='predict')
    assert results[0].pred_sem_seg.data.shape == (1, 64, 64)
    assert ext_calls == set()


def test_docs_name_the_op_list():
    """docs/setup.md lists the ops that are built: the same as tools/setup/mmcv_ops.txt."""
    with open(osp.join(REPO, 'docs', 'setup.md')) as f:
        docs = f.read()
    listed = re.search(r'compiled ops: `([^`]*)`', docs)
    assert listed, 'docs/setup.md: no "compiled ops: `...`" line'
    assert sorted(listed.group(1).split(', ')) == sorted(op_list())

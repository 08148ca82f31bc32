"""ONNX export (tools/deployment/export_onnx.py, backbones/deploy/onnx.py): ONNX Runtime equals torch for the
atto classifier, the atto backbone, UperNet and Semantic FPN at the export size and at other sizes (dynamic
files, sizes that are not multiples of 32 too), in deploy form too; the swaps that make sizes symbolic are
needed (controls) and exact; errors are one line; the ONNX Runtime snippet of docs/export.md runs without
torch."""
import os
import os.path as osp
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from backbones.deploy import onnx as ex
from backbones.deploy.onnx import SegmentorForward
from backbones.utils.errors import UserInputError
from tests.helpers import REPO
from tests.helpers.models import randomise_norms
from tests.helpers.threads import single_torch_thread
from tests.helpers.tool import tool

PY = sys.executable
one_thread = pytest.fixture(autouse=True, scope='module')(single_torch_thread)

CLS = 'configs/inceptionnext-atto_4xb320-600e_in1k.py'
UPERNET = 'configs/upernet_inceptionnext-atto_8xb2-160k_ade20k-512x512.py'
FPN = 'configs/fpn_inceptionnext-t_8xb2-80k_ade20k-512x512.py'
UPERNET_SMALL = {'model.decode_head.channels': 64, 'model.auxiliary_head.channels': 32}
FPN_ATTO = {'model.backbone.arch': 'atto', 'model.neck.in_channels': [40, 80, 160, 320],
            'model.neck.out_channels': 64, 'model.decode_head.in_channels': [64] * 4,
            'model.decode_head.channels': 32}
SHAPE = (64, 64)
OTHER = [(96, 128), (53, 61)]  # larger, and neither a multiple of 32 (stage-3 map of 1 x 1)


def trained_checkpoint(config, options, path):
    """Saves the config's model with non-trivial BN statistics and layer scales (so that folding is tested)
    as a training checkpoint would hold it (``state_dict`` + ``meta``); returns the (unprepared) model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        raw = ex.build_exportable(config, cfg_options=options, prepare=False).module
        randomise_norms(raw)
    model = getattr(raw, 'segmentor', raw)  # a segmentor's file holds the EncoderDecoder's keys
    torch.save({'meta': {'iter': 1}, 'state_dict': model.state_dict()}, str(path))
    return model


def build(config, options, folder, **kw):
    """``build_exportable`` from a checkpoint of ``trained_checkpoint``."""
    path = folder / (osp.basename(config) + '.pth')
    if not path.exists():
        trained_checkpoint(config, options, path)
    return ex.build_exportable(config, str(path), cfg_options=options, **kw)


@pytest.fixture(scope='module')
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('onnx')


@pytest.fixture(scope='module')
def exported(onnx_dir):
    """name -> (Exportable, path); each exported once (dynamic), on first use."""
    specs = {
        'classifier': (CLS, None, {}),
        'backbone_deploy': ('backbone:atto', None, dict(deploy=True)),
        'upernet': (UPERNET, UPERNET_SMALL, {}),
        'fpn_deploy': (FPN, FPN_ATTO, dict(deploy=True)),
    }
    cache = {}

    def get(name):
        if name not in cache:
            config, options, kw = specs[name]
            exp = build(config, options, onnx_dir, **kw)
            path = str(onnx_dir / f'{name}.onnx')
            ex.export_exportable(exp, path, shape=SHAPE, dynamic=True)
            cache[name] = exp, path
        return cache[name]
    return get


# --------------------------------------------------------------------------------------------------
# The adaptive-pool replacement
# --------------------------------------------------------------------------------------------------
def test_adaptive_pool_replacement_equals_torch():
    """Every size from 1 to 40 (odd, prime, smaller than the bins) x the PPM scales and a few others."""
    g = torch.Generator().manual_seed(0)
    for bins in (1, 2, 3, 6, 4, 5, 7, (3, 6), (2, None)):
        pool = ex.ExportableAdaptiveAvgPool2d(bins)
        for h in range(1, 41):
            w = (h * 7) % 37 + 1
            x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
            ref = F.adaptive_avg_pool2d(x, bins)
            out = pool(x)
            assert out.shape == ref.shape and torch.allclose(out, ref, rtol=0, atol=1e-12), (bins, h, w)
    x = torch.randn(2, 768, 23, 64, generator=g)  # float32, UperNet-T's stage-3 map at 736 x 2048
    for bins in (1, 2, 3, 6):
        ref = F.adaptive_avg_pool2d(x, bins)
        assert (ex.ExportableAdaptiveAvgPool2d(bins)(x) - ref).abs().max() <= 1e-6 * ref.abs().max()
    # the windows: [floor(i*H/s), ceil((i+1)*H/s)), overlapping when s does not divide H
    start, end = ex.adaptive_bins(5, 3)
    assert start.tolist() == [0, 1, 3] and end.tolist() == [2, 4, 5]


def test_replacement_swaps_ppm_pools_only_in_the_given_model():
    from mmseg.models.decode_heads.psp_head import PPM
    ppm = PPM((1, 2, 3, 6), 8, 4, conv_cfg=None, norm_cfg=None, act_cfg=dict(type='ReLU'),
              align_corners=False)
    copy = ex.prepare_for_export(__import__('copy').deepcopy(ppm))
    assert sum(isinstance(m, nn.AdaptiveAvgPool2d) for m in ppm.modules()) == 4
    assert sum(isinstance(m, ex.ExportableAdaptiveAvgPool2d) for m in copy.modules()) == 4
    x = torch.randn(2, 8, 13, 22)
    with torch.no_grad():
        assert all((a - b).abs().max() < 1e-6 for a, b in zip(ppm(x), copy(x)))


def test_control_unreplaced_adaptive_pool_is_wrong_at_other_sizes(tmp_path):
    """The control: ``nn.AdaptiveAvgPool2d`` exported as it is, dynamic, runs right at the traced size only:
    at others ONNX Runtime fails or answers wrong (torch.export keeps aten.adaptive_avg_pool2d; its ONNX
    lowering takes the windows from the traced size). With the swap it is right at every size."""
    torch.manual_seed(0)
    raw = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(3)).eval()
    swapped = ex.prepare_for_export(__import__('copy').deepcopy(raw))
    assert isinstance(swapped[1], ex.ExportableAdaptiveAvgPool2d)
    results = {}
    for name, net in (('raw', raw), ('swapped', swapped)):
        path = ex.export(net, str(tmp_path / f'{name}.onnx'), shape=(64, 64), dynamic=True)
        sess = ex.ort_session(path)
        errs = []
        for h, w in [(64, 64), (45, 71), (100, 38)]:
            x = torch.randn(1, 3, h, w)
            with torch.no_grad():
                ref = net(x).numpy()
            try:
                errs.append(np.abs(ex.ort_run(sess, x.numpy())[0] - ref).max())
            except ex.UserInputError as e:  # e.g. "Gather node ... indices element out of data bounds"
                errs.append(str(e))
        results[name] = errs
    assert results['raw'][0] < 1e-5, results  # right where traced
    assert all(isinstance(e, str) or e > 1e-3 for e in results['raw'][1:]), results  # failed or wrong
    assert max(results['swapped']) < 1e-5, results


def test_control_mmseg_upsample_pins_the_size(tmp_path):
    """mmseg's ``Upsample`` (Semantic FPN's head) computes int(H * 2) in Python: our export refuses it with
    dynamic sizes (torch.onnx.export alone would pin the size silently); the swapped module exports."""
    from mmseg.models.utils import Upsample
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Upsample(scale_factor=2, mode='bilinear')).eval()
    with pytest.raises(ex.ExportError, match='Constraints violated'):
        ex.export(net, str(tmp_path / 'raw.onnx'), shape=(32, 32), dynamic=True)
    swapped = ex.prepare_for_export(__import__('copy').deepcopy(net))
    assert isinstance(swapped[1], ex.ExportableUpsample)
    path = ex.export(swapped, str(tmp_path / 'ok.onnx'), shape=(32, 32), dynamic=True)
    x = torch.randn(1, 3, 45, 33)
    with torch.no_grad():
        ref = net(x)
    out = ex.ort_run(ex.ort_session(path), x.numpy())[0]
    assert out.shape == (1, 4, 90, 66) and np.abs(out - ref.numpy()).max() < 1e-5


# --------------------------------------------------------------------------------------------------
# ONNX Runtime equals torch
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('name', ['classifier', 'backbone_deploy', 'upernet', 'fpn_deploy'])
def test_dynamic_export_matches_torch_at_three_sizes(name, exported):
    exp, path = exported(name)
    lines = []
    worst = ex.check(exp, path, [SHAPE] + OTHER, log=lines.append)
    assert worst <= 1e-4 and len(lines) == 3 and all(line.endswith('ok') for line in lines)
    assert '(2, 3, 53, 61)' in lines[2]  # the batch is dynamic too
    # compared with the model as configured: mmseg's own pools and upsampling, BN not folded
    pools = [isinstance(m, (nn.AdaptiveAvgPool2d, ex.ExportableAdaptiveAvgPool2d, ex.ExportableUpsample))
             for m in exp.reference.modules()]
    assert not any(isinstance(m, (ex.ExportableAdaptiveAvgPool2d, ex.ExportableUpsample)) for m in
                   exp.reference.modules()) and any(pools) == (name == 'upernet')
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in exp.reference.modules())
    if name == 'backbone_deploy':  # the folded form: no BN left in the graph
        import onnx
        ops = {n.op_type for n in onnx.load(path).graph.node}
        assert 'BatchNormalization' not in ops and 'Conv' in ops
    meta = ex.ort_session(path).get_modelmeta().custom_metadata_map
    assert meta['mean'] == '123.675,116.28,103.53' and meta['channel_order'] == 'RGB'


@pytest.mark.slow
def test_check_fails_on_a_different_model(exported):
    """The check can fail: the same file against torch weights changed by 1e-2 of their scale."""
    exp, path = exported('classifier')
    w = exp.reference.head.fc2.weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w.add_(1e-2 * w.abs().max() * torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
        with pytest.raises(ex.ExportCheckError, match=r'relative difference .* > 0.0001'):
            ex.check(exp, path, [SHAPE], log=lambda s: None)
    finally:
        with torch.no_grad():
            w.copy_(saved)


def test_segmentor_forward_is_mmseg_whole_inference(tmp_path):
    """The tensor-only wrapper (pools swapped) equals mmseg's own predict() (mode='whole') of the model as
    configured, logits and labels."""
    from mmengine.config import ConfigDict
    from mmseg.structures import SegDataSample
    exp = build(UPERNET, UPERNET_SMALL, tmp_path)
    seg = exp.reference.segmentor
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in seg.modules())
    seg.test_cfg = ConfigDict(mode='whole')
    x = torch.randn(1, 3, 77, 50)
    with torch.no_grad():
        pred = seg.predict(x, [SegDataSample(metainfo=dict(img_shape=(77, 50), ori_shape=(77, 50),
                                                           pad_shape=(77, 50)))])[0]
        logits = exp.module(x)
    assert (pred.seg_logits.data - logits[0]).abs().max() < 1e-5
    assert torch.equal(pred.pred_sem_seg.data[0], logits[0].argmax(0))


@pytest.mark.slow
def test_upernet_checkpoint_deploy_argmax_static_through_the_cli(tmp_path):
    """The tool end to end: UperNet-atto from a checkpoint (an MMEngine-style file), folded, label map out,
    static; --check compares the labels through torch's logit margins; the static file then refuses another
    size with one line."""
    ckpt = str(tmp_path / 'upernet.pth')
    seg = trained_checkpoint(UPERNET, UPERNET_SMALL, ckpt)
    out = str(tmp_path / 'up.onnx')
    opts = ['--cfg-options'] + [f'{k}={v}' for k, v in UPERNET_SMALL.items()]
    log = tool('tools/deployment/export_onnx.py', UPERNET, ckpt, '--out', out, '--shape', '64', '96', '--deploy',
               '--argmax', '--check', *opts)
    assert 'wrote ' + out in log and '(deploy), input (1, 3, 64, 96) -> label' in log
    assert 'check (1, 3, 64, 96): label: ' in log and 'ONNX Runtime matches torch' in log
    import onnxruntime as ort
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    assert sess.get_outputs()[0].shape == [1, 64, 96] and sess.get_outputs()[0].type == 'tensor(int64)'
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():  # the checkpoint's weights are in the file (not the seeded random init)
        logits = SegmentorForward(seg.eval())(x)[0].numpy()
    assert _labels_agree(sess.run(None, {'input': x.numpy()})[0][0], logits)
    bad = tool('tools/deployment/export_onnx.py', UPERNET, ckpt, '--out', out, '--check-only', '--shape', '96', '64',
               '--deploy', '--argmax', *opts, expect=2)
    assert bad.strip().splitlines()[-1] == (
        'error: up.onnx takes input of shape (1, 3, 64, 96) only, got (1, 3, 96, 64): it was exported with a '
        'static shape (export with --dynamic for other sizes)')
    assert 'Traceback' not in bad


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
def test_cli_errors_are_one_line(tmp_path):
    out = str(tmp_path / 'x.onnx')
    tiny = str(tmp_path / 'tiny_backbone.pth')
    from backbones import InceptionNeXt
    torch.save(InceptionNeXt('tiny').state_dict(), tiny)
    cases = [
        (['configs/nope.py', '--out', out], 'error: config file not found: configs/nope.py'),
        (['backbone:atto', tiny, '--out', out],
         "error: checkpoint does not fit InceptionNeXt arch 'atto' (dims=(40, 80, 160, 320)): shape mismatch",
         'shape mismatches: stem.conv.weight: checkpoint (96, 3, 4, 4) vs model (40, 3, 4, 4); '),
    ]
    for args, msg, *part in cases:
        log = tool('tools/deployment/export_onnx.py', *args, expect=2)
        last = log.strip().splitlines()[-1]
        assert last.startswith(msg) and all(p in last for p in part), f'{args}: {last}'
        assert 'Traceback' not in log and not osp.exists(out)


def test_library_errors(tmp_path):
    tiny = str(tmp_path / 'tiny_backbone.pth')
    from backbones import InceptionNeXt
    torch.save(InceptionNeXt('tiny').state_dict(), tiny)
    with pytest.raises(ex.UserInputError, match="^unknown InceptionNeXt arch 'attoo'; known: atto, tiny"):
        ex.build_exportable('backbone:attoo')
    with pytest.raises(ex.UserInputError, match='^--argmax needs a classifier or a segmentor, not a bare'):
        ex.build_exportable('backbone:atto', argmax=True)
    with pytest.raises(ex.CheckpointError) as e:
        ex.build_exportable(UPERNET, tiny, cfg_options=UPERNET_SMALL)
    assert str(e.value).startswith(
        'checkpoint does not fit upernet_inceptionnext-atto_8xb2-160k_ade20k-512x512.py (EncoderDecoder, '
        'UPerHead) (no decode_head weights: a backbone or classifier file? export it with --backbone): '
        'missing in checkpoint: backbone.stem.conv.weight')
    with pytest.raises(ex.UserInputError) as e:
        ex.build_exportable('configs/retinanet_inceptionnext-t_fpn_1x_coco.py')
    assert str(e.value) == (
        'retinanet_inceptionnext-t_fpn_1x_coco.py: detection export is not supported: mmdet\'s detectors end '
        'in data-dependent post-processing (per-image NMS with a variable number of boxes, mmcv\'s compiled '
        'RoIAlign / NMS ops, Python loops over data samples) that torch.export cannot put into a standard '
        'ONNX graph without mmdeploy\'s rewrites; export the backbone with --backbone instead')
    with pytest.raises(ex.UserInputError, match=r'^--shape 16 64: H and W must be at least 32'):
        ex.export(nn.Identity(), str(tmp_path / 'x.onnx'), shape=(16, 64))


def test_checkpoints_load_strictly(tmp_path):
    """A classifier (train_cls layout, in a training-checkpoint dict), a segmentor and a segmentor's backbone
    (``--backbone``) get exactly the file's weights."""
    cls = trained_checkpoint(CLS, None, tmp_path / 'cls.pth')
    seg = trained_checkpoint(UPERNET, UPERNET_SMALL, tmp_path / 'seg.pth')
    seg_file = str(tmp_path / 'seg.pth')
    pairs = [(ex.build_exportable(CLS, str(tmp_path / 'cls.pth')).module, cls),
             (ex.build_exportable(UPERNET, seg_file, cfg_options=UPERNET_SMALL).module.segmentor, seg),
             (ex.build_exportable(UPERNET, seg_file, backbone=True).module.backbone, seg.backbone)]
    for loaded, ref in pairs:
        a, b = loaded.state_dict(), ref.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(ex.build_exportable(CLS).module.backbone.stem.norm.running_var,
                           cls.backbone.stem.norm.running_var)  # the random init is another model


# --------------------------------------------------------------------------------------------------
# The snippet of docs/export.md: ONNX Runtime alone
# --------------------------------------------------------------------------------------------------
DOC = osp.join(REPO, 'docs', 'export.md')


def doc_snippet():
    """The python block of docs/export.md that runs an exported file with ONNX Runtime alone."""
    with open(DOC) as f:
        blocks = re.findall(r'^```python\n(.*?)^```$', f.read(), flags=re.S | re.M)
    found = [b for b in blocks if 'import onnxruntime' in b]
    assert len(found) == 1, f'{DOC}: expected one python block with onnxruntime, found {len(found)}'
    return found[0]


def _snippet(onnx_file, image_file):
    """Runs the snippet in a python where ``import torch`` fails."""
    code = "import sys; sys.modules['torch'] = None; exec(compile(sys.argv.pop(1), 'snippet', 'exec'))"
    r = subprocess.run([PY, '-c', code, doc_snippet(), onnx_file, image_file], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    return np.array(eval(r.stdout))


def _labels_agree(labels, logits, tol=1e-4):
    """Labels equal torch's argmax except where the two logits are within tol (of the scale)."""
    ref = logits.argmax(0)
    diff = labels != ref
    picked = np.take_along_axis(logits, labels[None], 0)[0]
    return (logits.max(0) - picked)[diff].max(initial=0) <= tol * np.abs(logits).max()


@pytest.mark.slow
def test_export_doc_snippet_segments_an_image_without_torch(exported, tmp_path):
    """The label map of the snippet (PIL, RGB) equals torch on mmseg's own preprocessing of the file (cv2 BGR,
    SegDataPreProcessor with bgr_to_rgb); feeding BGR would not."""
    blocked = subprocess.run([PY, '-c', "import sys; sys.modules['torch'] = None; import torch"],
                             capture_output=True, text=True)
    assert blocked.returncode == 1 and 'ModuleNotFoundError' in blocked.stderr  # the snippet's python
    exp, path = exported('upernet')
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8), (83, 70),
                     interpolation=cv2.INTER_CUBIC)
    png = str(tmp_path / 'img.png')
    cv2.imwrite(png, img)
    labels = _snippet(path, png)
    from mmseg.models.data_preprocessor import SegDataPreProcessor
    bgr = torch.from_numpy(cv2.imread(png)).permute(2, 0, 1)
    for flip, agree in ((True, True), (False, False)):
        pre = SegDataPreProcessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                                  bgr_to_rgb=flip)
        x = pre(dict(inputs=[bgr]), training=False)['inputs']
        with torch.no_grad():
            logits = exp.reference(x)[0].numpy()
        assert labels.shape == (70, 83)
        assert _labels_agree(labels, logits) == agree


@pytest.mark.slow
def test_export_doc_snippet_classifies_an_image_without_torch(exported, tmp_path):
    """The classifier branch: the snippet's resize + crop + normalisation is the config's eval pipeline
    (TimmTransform, crop_pct 0.875) + ClsDataPreprocessor."""
    from PIL import Image

    from train_cls.model import ClsDataPreprocessor
    from train_cls.transforms import TimmTransform
    exp, path = exported('classifier')
    rng = np.random.default_rng(1)
    img = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (300, 241),
                     interpolation=cv2.INTER_CUBIC)
    png = str(tmp_path / 'img.png')
    Image.fromarray(img).save(png)
    label = _snippet(path, png)
    t = TimmTransform(input_size=224, is_training=False, crop_pct=0.875, interpolation='bicubic')
    x = t(dict(img=Image.open(png).convert('RGB')))['img']
    x = ClsDataPreprocessor()(dict(inputs=[x]))['inputs']
    with torch.no_grad():
        logits = exp.reference(x)[0].numpy()
    assert label.shape == () and _labels_agree(label[None, None], logits[:, None, None])


# --------------------------------------------------------------------------------------------------
# Benchmark rows
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_benchmark_times_onnx_runtime_rows(tmp_path):
    import csv
    tool('tools/analysis_tools/benchmark.py', '--models', 'ours_atto', 'ort:ours_atto_deploy', '--measure', 'infer',
         'train', '--batch', '2', '--train-batch', '2', '--size', '64', '--reps', '1', '--iters', '1',
         '--warmup', '1', '--out-csv', tmp_path / 't.csv')
    rows = list(csv.DictReader(open(tmp_path / 't.csv')))
    assert {(r['model'], r['mode']) for r in rows} == {
        ('ours_atto', 'infer'), ('ort:ours_atto_deploy', 'infer'), ('ours_atto', 'train')}  # ORT: no train
    assert all(float(r['best']) > 0 for r in rows)


def test_onnx_write_is_atomic_and_says_its_minimum_size(tmp_path, monkeypatch):
    pytest.importorskip('onnxruntime')
    from backbones.deploy import onnx as deploy
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=32), nn.AdaptiveAvgPool2d(1))
    path = str(tmp_path / 'm.onnx')
    deploy.export(model, path, shape=(64, 64), dynamic=True)
    good = open(path, 'rb').read()
    session = deploy.ort_session(path)
    assert session.get_modelmeta().custom_metadata_map['min_size'] == '32'
    with pytest.raises(UserInputError, match=r'needs H and W of at least 32 px \(min_size in its metadata\), got '
                                             r'\(1, 3, 16, 16\)'):
        deploy.ort_run(session, np.zeros((1, 3, 16, 16), np.float32), 'm.onnx')

    def interrupted(self, dst, **kw):
        with open(dst, 'wb') as f:
            f.write(b'partial')
        raise KeyboardInterrupt('signal during the write')

    import torch.onnx
    monkeypatch.setattr(torch.onnx.ONNXProgram, 'save', interrupted)
    with pytest.raises(KeyboardInterrupt):
        deploy.export(model, path, shape=(64, 64), dynamic=True)
    assert open(path, 'rb').read() == good and os.listdir(tmp_path) == ['m.onnx']

"""What the suite writes, in the ecosystem's own clients (docs/ecosystem.md).

Checkpoints of tools/train.py (a tiny UperNet-atto and Mask R-CNN-atto on the generated sets, 2 iterations) go
through mmseg's ``init_model`` / ``inference_model`` / ``MMSegInferencer``, mmdet's ``init_detector`` /
``inference_detector`` / ``DetInferencer`` and their tools, in fresh interpreters that import nothing of ours
(the configs' ``custom_imports`` do); the published file; the ONNX snippet with the test-time resize against
``MMSegInferencer``; mim on a regular install. Controls: the checkpoint written the old way, the old loader name,
a foreign pickle, the snippet without the resize.
"""
import glob
import json
import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from backbones.datasets.synthetic import write_ade, write_coco
from tests.helpers import REPO
from tests.helpers.processes import run, subprocess_env

pytestmark = pytest.mark.slow  # trainings and fresh interpreters with the whole stack (docs/testing.md)

PY = sys.executable
SITE = osp.dirname(osp.dirname(__import__('mmseg').__file__))
MMSEG_TOOLS = osp.join(SITE, 'mmseg', '.mim', 'tools')
MMDET_TOOLS = osp.join(SITE, 'mmdet', '.mim', 'tools')

SEG = '''
_base_ = [{base!r}]
data_root = {root!r}
model = dict(data_preprocessor=dict(size=(48, 48)), backbone=dict(init_cfg=None),
             decode_head=dict(channels=16), auxiliary_head=dict(channels=8))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    data_root=data_root, pipeline=[dict(type='LoadImageFromFile', _scope_='backbones'), dict(type='LoadAnnotations'),
                                   dict(type='PackSegInputs')]))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
'''
DET = '''
_base_ = [{base!r}]
data_root = {root!r}
model = dict(
    backbone=dict(init_cfg=None),
    neck=dict(out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32, anchor_generator=dict(scales=[4])),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=32), bbox_head=dict(in_channels=32, fc_out_channels=64),
                  mask_roi_extractor=dict(out_channels=32), mask_head=dict(in_channels=32, conv_out_channels=32)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=32)), rpn_proposal=dict(nms_pre=200, max_per_img=100)))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=2)
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
'''


def _python(code: str, *args, expect=0) -> str:
    """Runs ``code`` in a fresh interpreter (cwd: a temp-free folder outside the repo, so nothing of ours is on
    the path but the installed package); returns stdout + stderr."""
    r = subprocess.run([PY, '-c', code, *args], capture_output=True, text=True, timeout=900, cwd=osp.dirname(REPO),
                       env=subprocess_env())
    out = r.stdout + r.stderr
    assert r.returncode == expect, f'exit {r.returncode} (expected {expect}):\n{out[-4000:]}'
    return out


@pytest.fixture(scope='module')
def seg(tmp_path_factory):
    """(config, checkpoint, data root) of a 2-iteration UperNet-atto run of tools/train.py."""
    d = tmp_path_factory.mktemp('seg')
    root = str(d / 'ade')
    write_ade(root, num_train=8, num_val=2, size=(64, 48), seed=1)
    cfg = str(d / 'seg.py')
    base = osp.join(REPO, 'configs', 'upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py')
    open(cfg, 'w').write(SEG.format(base=base, root=root))
    run([PY, 'tools/train.py', cfg, '--work-dir', str(d / 'work')])
    return cfg, str(d / 'work' / 'iter_2.pth'), root


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    d = tmp_path_factory.mktemp('det')
    root = str(d / 'coco') + '/'
    write_coco(root, num_train=8, num_val=2, size=(64, 48), seed=1)
    cfg = str(d / 'det.py')
    base = osp.join(REPO, 'configs', 'mask-rcnn_inceptionnext-atto_fpn_500iter_synthetic-coco.py')
    open(cfg, 'w').write(DET.format(base=base, root=root))
    run([PY, 'tools/train.py', cfg, '--work-dir', str(d / 'work')])
    return cfg, str(d / 'work' / 'iter_2.pth'), root


def _legacy(ckpt: str, out: str) -> str:
    """The checkpoint as MMEngine wrote it before: HistoryBuffer objects and numpy arrays pickled."""
    from backbones.engine.mmengine_fixes import from_plain
    c = from_plain(torch.load(ckpt, map_location='cpu', weights_only=True))
    torch.save(c, out)
    return out


class _Foreign:
    def __reduce__(self):
        return (os.getcwd, ())


def test_training_checkpoints_are_plain_data(seg, det, tmp_path):
    """torch's safe loader reads our training checkpoints whole; the old form (the control) is refused."""
    from mmengine.logging import HistoryBuffer
    for _, ckpt, _ in (seg, det):
        c = torch.load(ckpt, map_location='cpu', weights_only=True)
        assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers', 'rng_states'} <= set(c)
        assert c['meta']['dataset_meta']['classes'] and 'cfg' in c['meta']
        legacy = _legacy(ckpt, str(tmp_path / 'legacy.pth'))
        with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer|numpy'):
            torch.load(legacy, weights_only=True)
    c = _legacy(seg[1], str(tmp_path / 'l.pth'))
    hub = torch.load(c, weights_only=False)['message_hub']['log_scalars']
    assert all(isinstance(v, HistoryBuffer) for v in hub.values()) and 'train/loss' in hub


SEG_CLIENTS = r'''
import sys, cv2, numpy as np
cfg, ckpt, img, old_cfg, foreign, empty = sys.argv[1:7]
from mmseg.apis import MMSegInferencer, inference_model, init_model
model = init_model(cfg, ckpt, device='cpu')
a = inference_model(model, img).pred_sem_seg.data.numpy()
b = inference_model(model, cv2.imread(img)).pred_sem_seg.data.numpy()
inf = MMSegInferencer(model=cfg, weights=ckpt, device='cpu')
c = inf(img, return_datasamples=True).pred_sem_seg.data.numpy()
d = inf(cv2.imread(img), return_datasamples=True).pred_sem_seg.data.numpy()
print('AGREE', bool((a == b).all() and (a == c).all() and (a == d).all()), a.shape, model.dataset_meta['classes'][1])
try:
    inf(empty)
except Exception as e:
    print('EMPTY', type(e).__name__, e)
try:
    MMSegInferencer(model=old_cfg, weights=ckpt, device='cpu')
except ValueError as e:
    print('OLD', e)
try:
    init_model(cfg, foreign, device='cpu')
except Exception as e:
    print('FOREIGN', type(e).__name__, str(e).splitlines()[0][:80])
'''


def _old_loader_config(cfg: str, folder) -> str:
    """The config with the loader under its former name (the control of the inferencers' lookup)."""
    old = str(folder / 'old.py')
    with open(old, 'w') as f:
        f.write(f"_base_ = [{cfg!r}]\n"
                "test_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImageFromFileChecked'), "
                "dict(type='PackSegInputs')]))\n")
    return old


def test_mmseg_clients_load_a_training_checkpoint(seg, tmp_path):
    """init_model, inference_model (path and array) and MMSegInferencer agree on a checkpoint of tools/train.py, in
    a python that imports nothing of ours; a path given to the inferencer still goes through the checked loader.
    Controls: the loader under its former name is not found by the inferencer; a foreign pickle is refused."""
    cfg, ckpt, root = seg
    img = sorted(glob.glob(osp.join(root, 'images', 'validation', '*.jpg')))[0]
    foreign = str(tmp_path / 'foreign.pth')
    torch.save({'state_dict': {}, 'meta': _Foreign()}, foreign)
    empty = str(tmp_path / 'empty.jpg')
    open(empty, 'wb').close()
    out = _python(SEG_CLIENTS, cfg, ckpt, img, _old_loader_config(cfg, tmp_path), foreign, empty)
    assert 'AGREE True (1, 48, 64) rectangle' in out, out[-3000:]
    assert f'EMPTY DatasetError {empty}: cannot load the image: empty file (0 bytes)' in out
    assert 'OLD LoadImageFromFile is not found in the test pipeline' in out
    assert re.search(r'FOREIGN UnpicklingError Weights only load failed', out)


def test_mmseg_tools_and_publish(seg, tmp_path):
    """mmseg's publish_model.py and benchmark.py read the checkpoint; ours publishes it as NAME-<sha8>.pth with
    weights and meta only, which init_model and an inferencer built from the file alone load."""
    cfg, ckpt, root = seg
    out = run([PY, osp.join(MMSEG_TOOLS, 'misc', 'publish_model.py'), ckpt, str(tmp_path / 'mm.pth')])
    assert glob.glob(str(tmp_path / 'mm-*.pth')), out
    out = run([PY, osp.join(MMSEG_TOOLS, 'analysis_tools', 'benchmark.py'), cfg, ckpt])
    assert 'Average fps' in out
    out = run([PY, 'tools/model_converters/publish_model.py', ckpt, str(tmp_path / 'upernet.pth')])
    (pub,) = glob.glob(str(tmp_path / 'upernet-*.pth'))
    import hashlib
    assert osp.basename(pub) == f'upernet-{hashlib.sha256(open(pub, "rb").read()).hexdigest()[:8]}.pth'
    assert f'wrote {pub}' in out
    c = torch.load(pub, weights_only=True)
    assert set(c) == {'meta', 'state_dict'} and {'cfg', 'dataset_meta'} <= set(c['meta'])
    full = torch.load(ckpt, weights_only=True)['state_dict']
    assert c['state_dict'].keys() == full.keys() and all(torch.equal(c['state_dict'][k], full[k]) for k in full)
    img = sorted(glob.glob(osp.join(root, 'images', 'validation', '*.jpg')))[0]
    code = ('import sys; from mmseg.apis import MMSegInferencer, init_model, inference_model\n'
            'a = inference_model(init_model(sys.argv[1], sys.argv[2], device="cpu"), sys.argv[3]).pred_sem_seg.data\n'
            'b = MMSegInferencer(model=None, weights=sys.argv[2], device="cpu")(sys.argv[3], return_datasamples=True)'
            '.pred_sem_seg.data\n'
            'print("SAME", bool((a == b).all()))')
    assert 'SAME True' in _python(code, cfg, pub, img)


def test_mmseg_browse_dataset_draws_the_synthetic_set(seg, tmp_path):
    """mmseg's misc/browse_dataset.py draws every training sample with its class names through the configs'
    visualizer; the control, mmseg's own SegLocalVisualizer, stops on the image layout (mmseg issue #3405)."""
    cfg = seg[0]
    tool = osp.join(MMSEG_TOOLS, 'misc', 'browse_dataset.py')
    run([PY, tool, cfg, '--output-dir', str(tmp_path / 'b'), '--not-show'])
    pngs = glob.glob(str(tmp_path / 'b' / '**' / '*.png'), recursive=True)
    assert len(pngs) == 8
    import cv2
    drawn = cv2.imread(pngs[0])
    assert drawn.shape == (48, 64, 3) and drawn.std() > 10  # the sample (the fixture's pipeline keeps its size)
    out = run([PY, tool, cfg, '--output-dir', str(tmp_path / 'c'), '--not-show',
               '--cfg-options', 'visualizer.type=SegLocalVisualizer'], expect=1)
    assert 'Layout of the output array' in out


def test_confusion_matrix_of_both_test_tools(seg, tmp_path):
    """tools/analysis_tools/confusion_matrix.py on the predictions of our tools/test.py (--out .pkl) and of mmseg's
    (--out PNG folder, written one above the labels on this reduce_zero_label set) gives one matrix, whose diagonal,
    row and column sums are mmseg IoUMetric's intersect / label / prediction areas. Controls: mmseg's own
    confusion_matrix.py stops on the same folder (mmseg issue #1687); a folder missing one image is named."""
    from mmseg.evaluation.metrics import IoUMetric
    cfg, ckpt, root = seg
    pkl, pngs = str(tmp_path / 'res.pkl'), str(tmp_path / 'pred')
    run([PY, 'tools/test.py', cfg, ckpt, '--out', pkl, '--work-dir', str(tmp_path / 'w1')])
    run([PY, osp.join(MMSEG_TOOLS, 'test.py'), cfg, ckpt, '--out', pngs, '--work-dir', str(tmp_path / 'w2')])
    tool = 'tools/analysis_tools/confusion_matrix.py'
    out = run([PY, tool, cfg, pkl, str(tmp_path / 'a')])
    run([PY, tool, cfg, pngs, str(tmp_path / 'b')])
    a, b = (np.loadtxt(tmp_path / d / 'confusion_matrix.csv', delimiter=',', skiprows=1, usecols=range(1, 7),
                       dtype=np.int64) for d in 'ab')
    assert np.array_equal(a, b) and a.sum() > 0
    areas = [torch.zeros(6, dtype=torch.float64) for _ in range(4)]
    for s in pickle.load(open(pkl, 'rb')):
        r = IoUMetric.intersect_and_union(s['pred_sem_seg']['data'].squeeze(), s['gt_sem_seg']['data'].squeeze(),
                                          6, 255)
        areas = [x + y for x, y in zip(areas, r)]
    inter, union, pred, label = (x.numpy() for x in areas)
    assert np.array_equal(np.diag(a), inter) and np.array_equal(a.sum(1), label) and np.array_equal(a.sum(0), pred)
    assert np.array_equal(a.sum(1) + a.sum(0) - np.diag(a), union)
    with np.errstate(invalid="ignore"):
        miou = np.nanmean(inter / union) * 100
    assert f'mIoU={miou:.2f}' in out and 'disc' in out
    assert os.path.getsize(tmp_path / 'a' / 'confusion_matrix.png') > 5000
    bad = run([PY, osp.join(MMSEG_TOOLS, 'analysis_tools', 'confusion_matrix.py'), cfg, pngs, str(tmp_path / 'c')],
              expect=1)
    assert 'cannot reshape' in bad
    os.remove(osp.join(pngs, 'ADE_valid_000001.png'))
    err = run([PY, tool, cfg, pngs, str(tmp_path / 'd')], expect=2)
    assert err.strip().splitlines()[-1] == (f'error: {pngs}: no prediction ADE_valid_000001.png for '
                                            f'{osp.join(root, "images", "validation", "ADE_valid_000001.jpg")} '
                                            'of the test set')


def test_publish_reads_old_checkpoints_but_no_foreign_code(seg, tmp_path):
    """A checkpoint written before checkpoints became plain data publishes too (HistoryBuffer and numpy allowed
    for it, no more); a file calling anything else is refused with one line."""
    legacy = _legacy(seg[1], str(tmp_path / 'legacy.pth'))
    run([PY, 'tools/model_converters/publish_model.py', legacy, str(tmp_path / 'old.pth')])
    (pub,) = glob.glob(str(tmp_path / 'old-*.pth'))
    assert set(torch.load(pub, weights_only=True)) == {'meta', 'state_dict'}
    c = torch.load(legacy, weights_only=False)
    c['message_hub']['runtime_info']['x'] = _Foreign()
    torch.save(c, str(tmp_path / 'bad.pth'))
    out = run([PY, 'tools/model_converters/publish_model.py', str(tmp_path / 'bad.pth'), str(tmp_path / 'b.pth')],
              expect=2)
    assert out.strip().splitlines()[-1].startswith('error: ') and 'getcwd' in out
    assert not glob.glob(str(tmp_path / 'b-*.pth'))


DET_CLIENTS = r'''
import sys, cv2, torch
cfg, ckpt, img = sys.argv[1:4]
from mmdet.apis import DetInferencer, inference_detector, init_detector
model = init_detector(cfg, ckpt, device='cpu')
a = inference_detector(model, img).pred_instances
b = inference_detector(model, cv2.imread(img)).pred_instances
inf = DetInferencer(model=cfg, weights=ckpt, device='cpu', show_progress=False)
c = inf(img, return_datasamples=True, no_save_vis=True)['predictions'][0].pred_instances
d = DetInferencer(model=None, weights=ckpt, device='cpu', show_progress=False)(
    img, return_datasamples=True, no_save_vis=True)['predictions'][0].pred_instances
print('AGREE', all(torch.equal(a.bboxes, x.bboxes) for x in (b, c, d)), len(a.bboxes) > 0,
      model.dataset_meta['classes'])
'''


def test_mmdet_clients_load_a_training_checkpoint(det, tmp_path):
    """init_detector, inference_detector (path and array) and DetInferencer (config + weights, and the weights
    alone) agree on a checkpoint of tools/train.py; mmdet's browse_dataset.py shows the synthetic set with its
    classes and analyze_logs.py plots the run's log (seaborn)."""
    cfg, ckpt, root = det
    img = sorted(glob.glob(osp.join(root, 'val2017', '*.jpg')))[0]
    out = _python(DET_CLIENTS, cfg, ckpt, img)
    assert "AGREE True True ('rectangle', 'disc', 'triangle')" in out, out[-3000:]
    run([PY, osp.join(MMDET_TOOLS, 'analysis_tools', 'browse_dataset.py'), cfg, '--output-dir', str(tmp_path / 'b'),
         '--not-show'])
    assert len(os.listdir(tmp_path / 'b')) == 8
    (log,) = glob.glob(osp.join(osp.dirname(ckpt), '*', 'vis_data', 'scalars.json'))
    run([PY, osp.join(MMDET_TOOLS, 'analysis_tools', 'analyze_logs.py'), 'plot_curve', log, '--keys', 'loss',
         '--out', str(tmp_path / 'loss.png')])
    assert osp.getsize(tmp_path / 'loss.png') > 5000


def test_synthetic_ade_dataset_carries_classes_and_palette(seg):
    """mmseg's tools read class names off the data set class (``METAINFO``): the synthetic set's class has them
    (and the palette, which the visualiser draws with); the config builds it."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    cfg = Config.fromfile(seg[0])
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = DATASETS.build(cfg.test_dataloader.dataset)
    assert type(ds).__name__ == 'SyntheticADEDataset'
    assert ds.METAINFO['classes'] == ('background', 'rectangle', 'disc', 'triangle', 'diamond', 'cross')
    assert len(ds.METAINFO['palette']) == 6 and ds.metainfo['palette'] == ds.METAINFO['palette']
    from mmseg.datasets import BaseSegDataset
    assert BaseSegDataset.METAINFO == {}  # the control: what the set was read through before (KeyError 'classes')


# --------------------------------------------------------------------------------------------------
# ONNX: the snippet of docs/ecosystem.md against MMSegInferencer
# --------------------------------------------------------------------------------------------------
def _doc_snippet() -> str:
    doc = open(osp.join(REPO, 'docs', 'ecosystem.md')).read()
    section = doc[doc.index('## ONNX segmentors'):]
    start = section.index('```python\n') + len('```python\n')
    return section[start:section.index('\n```', start)]


def _snippet(onnx_file, image_file):
    code = "import sys; sys.modules['torch'] = None; exec(compile(sys.argv.pop(1), 'snippet', 'exec'))"
    r = subprocess.run([PY, '-c', code, _doc_snippet(), onnx_file, image_file], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    return np.array(eval(r.stdout))


MMSEG_LOGITS = r'''
import sys, numpy as np
from mmseg.apis import MMSegInferencer
inf = MMSegInferencer(model=sys.argv[1], weights=sys.argv[2], device='cpu')
for i, img in enumerate(sys.argv[3:]):
    s = inf(img, return_datasamples=True)
    np.save(f'{img}.labels.npy', s.pred_sem_seg.data.numpy()[0])
    np.save(f'{img}.logits.npy', s.seg_logits.data.numpy())
'''


def test_onnx_snippet_applies_the_test_resize(seg, tmp_path):
    """The exported file records the config's test-time resize; the documented snippet (ONNX Runtime, OpenCV,
    numpy) applies it and returns the label map at the image's size, equal to MMSegInferencer's on odd-size
    images except where mmseg's top two logits tie to float rounding. Control: the same file without the resize
    in its metadata disagrees."""
    import cv2
    import onnx
    cfg, ckpt, _ = seg
    path = str(tmp_path / 'seg.onnx')
    run([PY, 'tools/deployment/export_onnx.py', cfg, ckpt, '--out', path, '--dynamic'])
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(meta['test_resize']) == dict(scale=[160, 128], scale_factor=None, keep_ratio=True,
                                                   interpolation='bilinear', align_corners=False)
    rng = np.random.default_rng(0)
    images = []
    for h, w in ((97, 211), (301, 67)):
        img = cv2.resize(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        images.append(str(tmp_path / f'img_{h}x{w}.png'))
        cv2.imwrite(images[-1], img)
    _python(MMSEG_LOGITS, cfg, ckpt, *images)
    m = onnx.load(path)
    for p in m.metadata_props:
        if p.key == 'test_resize':
            p.value = 'null'
    no_resize = str(tmp_path / 'no_resize.onnx')
    onnx.save(m, no_resize)
    for img in images:
        want, logits = np.load(img + '.labels.npy'), np.load(img + '.logits.npy')
        got = _snippet(path, img)
        assert got.shape == want.shape == cv2.imread(img).shape[:2]
        diff = got != want
        picked = np.take_along_axis(logits, got[None], 0)[0]
        margin = (logits.max(0) - picked)[diff].max(initial=0)
        assert margin <= 1e-4 * np.abs(logits).max(), f'{diff.sum()} labels differ, logit margin {margin}'
        control = _snippet(no_resize, img)
        assert (control != want).mean() > 0.001, 'without the resize the snippet should disagree'


# --------------------------------------------------------------------------------------------------
# mim, on a regular install and on the editable one of tools/setup_env.sh
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module', params=['regular', 'editable'])
def installed(request, tmp_path_factory):
    """The package as mim finds it: installed the regular way (a copy in site-packages, with backbones/.mim) in
    a folder put first on the path, or this checkout's editable install (None: tools/setup_env.sh links
    site-packages/inceptionnext-dense to backbones/, where mim looks)."""
    if request.param == 'editable':
        import sysconfig
        link = osp.join(sysconfig.get_paths()['purelib'], 'inceptionnext-dense')
        assert osp.realpath(link) == osp.join(REPO, 'backbones')
        return None
    target = str(tmp_path_factory.mktemp('site'))
    run([PY, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation', '--no-index', '--target', target, '.'])
    return target


def _mim(installed, *args, expect=0) -> str:
    env = {'PYTHONPATH': installed} if installed else {}  # the installed copy first (the repo after it)
    r = subprocess.run([PY, '-m', 'mim', *args], capture_output=True, text=True, timeout=900, cwd=osp.dirname(REPO),
                       env={**subprocess_env(), **env})
    out = r.stdout + r.stderr
    assert r.returncode == expect, f'exit {r.returncode}:\n{out[-4000:]}'
    return out


def test_mim_search_finds_every_config(installed):
    out = _mim(installed, 'search', 'inceptionnext-dense')
    found = set(re.findall(r'config id: (\S+)', out))
    configs = {f[:-3] for f in os.listdir(osp.join(REPO, 'configs')) if f.endswith('.py')}
    assert found == configs
    assert len(re.findall(r'config id: ', _mim(installed, 'search', 'inceptionnext-dense', '--dataset', 'ade20k'))) == 8
    out = _mim(installed, 'search', 'inceptionnext-dense', '--condition', 'iterations>=160000')
    assert set(re.findall(r'config id: (\S+)', out)) == {
        'upernet_inceptionnext-atto_8xb2-160k_ade20k-512x512', 'upernet_inceptionnext-t_8xb2-160k_ade20k-512x512',
        'upernet_inceptionnext-s_8xb2-160k_ade20k-512x512', 'upernet_inceptionnext-b_8xb2-160k_ade20k-512x512',
        'upernet_inceptionnext_t'}


def test_mim_train_and_test_run_a_config(installed, seg, tmp_path):
    """``mim train`` / ``mim test`` find the config by name in the installed package and run our tools."""
    root = seg[2]
    small = ['model.decode_head.channels=16', 'model.auxiliary_head.channels=8']
    data = [f'{s}_dataloader.{k}' for s in ('train', 'val', 'test')
            for k in (f'dataset.data_root={root}', 'num_workers=0', 'persistent_workers=False')]
    name = 'upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py'
    work = str(tmp_path / 'work')
    out = _mim(installed, 'train', 'inceptionnext-dense', name, '--work-dir', work, '--cfg-options',
               'model.backbone.init_cfg=None', 'train_dataloader.batch_size=2', 'train_cfg.max_iters=1',
               'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1', *small, *data)
    assert 'Training finished successfully' in out and osp.isfile(osp.join(work, 'iter_1.pth'))
    out = _mim(installed, 'test', 'inceptionnext-dense', name, '--checkpoint', osp.join(work, 'iter_1.pth'),
               '--cfg-options', *small, *[d for d in data if d.startswith('test')])
    assert 'Testing finished successfully' in out and 'mIoU' in out

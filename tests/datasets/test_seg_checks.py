"""Bad segmentation data (ADE layout): what mmseg does on its own, and what the suite reports.

For each case the test shows mmseg 1.2's own behaviour (a dataloader-worker traceback whenever the file is
reached, or silent wrong labels) and what ``backbones.datasets.checks`` report: the pre-flight
``check_seg_datasets`` (run by tools/train.py and tools/test.py before the Runner) and, at load time, the
configs' ``LoadImageFromFileChecked`` and ``CheckSegMap``.
"""
import glob
import os
import os.path as osp
import re
import shutil
import sys

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

from backbones.datasets.checks import common as checks_common
from backbones.datasets.checks.segmentation import check_seg_datasets
from backbones.datasets.synthetic import write_ade
from backbones.utils.errors import AnnotationError, DatasetError, UserInputError
from tests.helpers import REPO
from tests.helpers.logs import LogCapture
from tests.helpers.processes import run
from tests.helpers.seg_data import SEG, _seg_opts
from tests.helpers.tool import tool

PY = sys.executable
SYNTH = osp.join(REPO, 'configs', 'upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py')
WHERE = r' \(train_dataloader.dataset\)'


@pytest.fixture(autouse=True)
def fresh_warnings():
    checks_common._warned.clear()  # "warn once" is per process; each test starts afresh
    yield
    checks_common._warned.clear()


@pytest.fixture
def ade(tmp_path):
    """A small ADE-layout set: 6 training and 2 validation pairs of 64x48; paths of the training files."""
    root = str(tmp_path / 'ade')
    write_ade(root, num_train=6, num_val=2, size=(64, 48))
    imgs = sorted(glob.glob(osp.join(root, 'images', 'training', '*.jpg')))
    anns = sorted(glob.glob(osp.join(root, 'annotations', 'training', '*.png')))
    return dict(root=root, imgs=imgs, anns=anns)


def config_for(root, **model):
    cfg = Config.fromfile(SYNTH)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = root
    for head, n in model.items():
        cfg.model[head].num_classes = n
    return cfg


def dataset(root, loader='LoadImageFromFileChecked'):
    """The synthetic config's training set with a plain pipeline (no random transforms)."""
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    ds = config_for(root).train_dataloader.dataset
    ds.pipeline = [dict(type=loader), dict(type='LoadAnnotations'), dict(type='CheckSegMap', num_classes=6),
                   dict(type='PackSegInputs')]
    with DefaultScope.overwrite_default_scope('mmseg'):
        return DATASETS.build(ds)


def mmseg_alone(root):
    """The same set read by mmseg's own steps only (mmcv's LoadImageFromFile, no CheckSegMap)."""
    ds = dataset(root, 'LoadImageFromFile')
    ds.pipeline.transforms = [t for t in ds.pipeline.transforms if type(t).__name__ != 'CheckSegMap']
    return ds


def label_map(sample) -> np.ndarray:
    return sample['data_samples'].gt_sem_seg.data.numpy()


def in_a_worker(ds, index):
    """Loads item ``index`` in a dataloader worker process; returns the exception it re-raises here."""
    import torch
    from mmengine.dataset import pseudo_collate
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, [index]), batch_size=1, num_workers=1,
                                         collate_fn=pseudo_collate)
    with pytest.raises(Exception) as e:
        next(iter(loader))
    return e.value


# --------------------------------------------------------------------------------------------------
def test_clean_data_passes_and_is_fast(ade):
    with LogCapture() as log:
        out = dict(check_seg_datasets(config_for(ade['root'])))
    assert out['train_dataloader.dataset']['images'] == out['train_dataloader.dataset']['annotations'] == 6
    assert out['train_dataloader.dataset']['labels_checked'] == 6  # fewer than the sample: all of them
    assert out['val_dataloader.dataset']['images'] == 2
    assert log.warnings() == []


def test_missing_annotation(ade):
    os.remove(ade['anns'][1])
    with pytest.raises(FileNotFoundError):
        mmseg_alone(ade['root'])[1]  # in a worker, whenever it is reached
    with pytest.raises(DatasetError, match=r'^1 of 6 files not found: annotation .*annotations/training/'
                                           r'ADE_train_000001.png \(of .*images/training/ADE_train_000001.jpg\)'
                                           + WHERE):
        check_seg_datasets(config_for(ade['root']))


@pytest.mark.parametrize('damage', ['empty', 'truncated'])
def test_empty_or_truncated_jpeg(ade, damage):
    path = ade['imgs'][2]
    data = open(path, 'rb').read()
    open(path, 'wb').write(b'' if damage == 'empty' else data[:len(data) // 2])
    # mmcv's loader: OpenCV's "!buf.empty()" assertion (no file named) / "failed to load image"
    with pytest.raises(Exception) as e:
        mmseg_alone(ade['root'])[2]
    assert ('ADE_train_000002' in str(e.value)) == (damage == 'truncated')
    why = r'empty file \(0 bytes\)' if damage == 'empty' else (r'truncated \(no JPEG end-of-image marker\) '
                                                                r'and does not decode')
    with pytest.raises(DatasetError, match=r'^1 of 6 images cannot be loaded: .*images/training/'
                                           r'ADE_train_000002.jpg: ' + why + WHERE):
        check_seg_datasets(config_for(ade['root']))
    # the configs' loader names the file, also from a dataloader worker (the tools print the last line)
    err = in_a_worker(dataset(ade['root']), 2)
    assert isinstance(err, DatasetError)
    assert str(err).strip().splitlines()[-1].endswith(
        f'{path}: cannot load the image: ' + ('empty file (0 bytes)' if damage == 'empty' else
                                              'truncated (no end marker)'))


def test_jpeg_with_data_after_its_end_is_fine(ade):
    with open(ade['imgs'][0], 'ab') as f:
        f.write(b'\0' * 4096)  # some writers append data after the end marker: it decodes, no error
    check_seg_datasets(config_for(ade['root']))
    dataset(ade['root'])[0]


def test_annotation_saved_as_rgb(ade):
    """Equal channels (a grey map saved as RGB): mmseg loads a 3-channel map and passes it on."""
    path = ade['anns'][3]
    seg = cv2.imread(path, 0)
    cv2.imwrite(path, np.stack([seg] * 3, -1))
    assert label_map(mmseg_alone(ade['root'])[3]).shape == (48, 64, 3)  # fails later, in a loss or a crop
    with pytest.raises(AnnotationError, match=r'ADE_train_000003.png: the annotation has 3 channels'):
        dataset(ade['root'])[3]
    with pytest.raises(AnnotationError, match=r'^1 of 6 annotations are not single-channel \(a segmentation map '
                                              r'is a PNG of mode L, P or I;16.*\): .*ADE_train_000003.png: mode '
                                              r'RGB' + WHERE):
        check_seg_datasets(config_for(ade['root']))


def write_16bit(path, value):
    seg = cv2.imread(path, 0).astype(np.uint16)
    seg[:3, :3] = value
    Image.fromarray(seg).save(path)
    assert Image.open(path).mode == 'I;16'
    return seg


def test_16bit_annotation_with_a_value_above_255(ade):
    path = ade['anns'][4]
    write_16bit(path, 258)
    assert (label_map(mmseg_alone(ade['root'])[4])[0, :3, :3] == 1).all()  # 258 -> 2 -> class 1: silently
    with pytest.raises(AnnotationError, match=r'ADE_train_000004.png: a 16-bit annotation with values above 255: '
                                              r'258 \(-> 2\); mmseg reads annotations as 8 bits'):
        dataset(ade['root'])[4]
    with pytest.raises(AnnotationError, match=r'^.*ADE_train_000004.png: a 16-bit annotation with values above '
                                              r'255: 258 \(-> 2\).*' + WHERE):
        check_seg_datasets(config_for(ade['root']))


def test_16bit_annotation_that_fits_8_bits_warns_once_and_works(ade):
    seg = write_16bit(ade['anns'][4], 3)
    write_16bit(ade['anns'][5], 4)
    with LogCapture() as log:
        counts = dict(check_seg_datasets(config_for(ade['root'])))['train_dataloader.dataset']
        ds = dataset(ade['root'])
        items = [ds[i] for i in range(6)]
    assert counts['sixteen_bit'] == 2
    warnings = [w for w in log.warnings() if '16-bit' in w]
    assert len(warnings) == 1, log.warnings()
    assert warnings[0].startswith('2 annotation PNG(s) are 16-bit (e.g. ') and 'ADE_train_000004.png' in warnings[0]
    assert 'read as 8-bit class indices' in warnings[0]
    expected = np.where(seg == 0, 255, seg.astype(np.int64) - 1)  # reduce_zero_label
    assert (label_map(items[4])[0] == expected).all()


def test_annotation_size_differs_and_exif(ade):
    cv2.imwrite(ade['anns'][1], np.ones((40, 64), np.uint8))
    with pytest.raises(AnnotationError, match=r'^1 of 6 annotations differ in size from their image: .*'
                                              r'ADE_train_000001.png: annotation size 64x40 \(WxH\) differs from '
                                              r'its image .*ADE_train_000001.jpg 64x48' + WHERE):
        check_seg_datasets(config_for(ade['root']))
    os.remove(ade['anns'][1])
    write_ade(ade['root'], num_train=6, num_val=2, size=(64, 48))  # repaired
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.open(ade['imgs'][2]).save(ade['imgs'][2], exif=exif.tobytes())
    assert mmseg_alone(ade['root'])[2]['data_samples'].ori_shape == (64, 48)  # decoded turned, silently
    with pytest.raises(AnnotationError, match=r'ADE_train_000002.png: annotation size 64x48 \(WxH\) differs from '
                                              r'its image .*ADE_train_000002.jpg 48x64 \(EXIF orientation 8 '
                                              r'rotates the stored 64x48 pixels when they are loaded; if the '
                                              r"annotations are of the stored pixels, load with "
                                              r"color_type='color_ignore_orientation'\)"):
        check_seg_datasets(config_for(ade['root']))


def test_label_values_outside_the_classes(ade):
    seg = cv2.imread(ade['anns'][0], 0)
    seg[:4, :4] = 9  # class 8 after reduce_zero_label; the data set has 6
    cv2.imwrite(ade['anns'][0], seg)
    with pytest.raises(AnnotationError, match=r'^1 of 6 checked annotations have labels outside the classes: '
                                              r'.*ADE_train_000000.png: label values \[8\] outside the 6 classes '
                                              r'\(valid: 0..5, ignore 255; PNG values \[9\]'):
        check_seg_datasets(config_for(ade['root']))
    # the default checks a sample; 'none' skips decoding, and CheckSegMap still names it at load time
    check_seg_datasets(config_for(ade['root']), labels='none')
    with pytest.raises(AnnotationError, match=r'ADE_train_000000.png: label values \[8\] outside the 6 classes'):
        dataset(ade['root'])[0]


@pytest.mark.parametrize('dtype', [np.uint8, np.int16, np.int64])
def test_check_seg_map_labels_by_range_tests(dtype, monkeypatch):
    """CheckSegMap's label test: the values outside [0, num_classes) and not ignore (negative ones of a
    signed map too), named sorted and once, as np.unique would; a map without them is passed on range tests
    alone (np.unique, a sort of every map, runs only on the error path)."""
    from backbones.datasets import transforms as seg_transforms
    check = seg_transforms.CheckSegMap(num_classes=6, ignore_index=255)

    def run(seg, unique_allowed=True):
        if not unique_allowed:
            monkeypatch.setattr(seg_transforms.np, 'unique', None)  # any call fails
        try:
            return check(dict(gt_seg_map=seg, img=np.zeros(seg.shape + (3,), np.uint8), seg_map_path='m.png'))
        finally:
            monkeypatch.undo()

    seg = np.zeros((40, 30), dtype)
    seg[:, :6] = np.arange(6)
    seg[0, 0] = 255
    assert run(seg, unique_allowed=False) is not None  # classes and ignore: no sort
    assert run(seg[1:], unique_allowed=False) is not None  # classes only
    for values, expect in (((8, 6, 8, 254), '[6, 8, 254]'), ((7,), '[7]')):
        bad = seg.copy()
        bad[5, :len(values)] = values
        with pytest.raises(AnnotationError, match=rf'm.png: label values {re.escape(expect)} outside the 6 '
                                                  r'classes \(valid: 0..5, ignore 255;'):
            run(bad)
    if np.dtype(dtype).kind == 'i':
        bad = seg.copy()
        bad[3, 3], bad[4, 4] = -1, 9
        with pytest.raises(AnnotationError, match=r'label values \[-1, 9\] outside'):
            run(bad)
        negative_ignore = seg_transforms.CheckSegMap(num_classes=6, ignore_index=-1)
        bad[4, 4] = 0
        bad[0, 0] = 3
        assert negative_ignore(dict(gt_seg_map=bad, img=np.zeros((40, 30, 3), np.uint8))) is not None


def test_check_seg_map_uint8_test_agrees_with_the_definition():
    """The uint8 / ignore 255 shortcut (a wrapping subtraction) against the definition, for every value."""
    from backbones.datasets.transforms import CheckSegMap
    for n in (1, 6, 150, 254, 255):
        check = CheckSegMap(num_classes=n)
        for v in range(256):
            seg = np.zeros((3, 4), np.uint8)
            seg[1, 2] = v
            assert (check.outside(seg) is not None) == (v >= n and v != 255), (n, v)


def test_label_sample_is_spread_and_includes_every_16bit_file(ade):
    write_16bit(ade['anns'][5], 3)
    counts = dict(check_seg_datasets(config_for(ade['root']), label_sample=2))['train_dataloader.dataset']
    assert counts['labels_checked'] == 3  # 2 spread over the set + the 16-bit one


def test_unused_annotation_files_are_reported(ade):
    os.remove(ade['imgs'][5])
    with LogCapture() as log:
        counts = dict(check_seg_datasets(config_for(ade['root'])))['train_dataloader.dataset']
    assert counts['images'] == 5
    assert any(w.startswith('1 annotation files without an image (not used; train_dataloader.dataset): ')
               and w.endswith('ADE_train_000005.png') for w in log.warnings()), log.warnings()


def test_head_with_fewer_classes_is_an_error(ade):
    with pytest.raises(UserInputError, match=r'^model.decode_head.num_classes = 5; model.auxiliary_head.'
                                             r'num_classes = 5 but the data set has 6 classes \(train_dataloader.'
                                             r'dataset.metainfo.classes\): label 5 would have no output in the '
                                             r'head \(an IndexError in the loss\); set num_classes = 6$'):
        check_seg_datasets(config_for(ade['root'], decode_head=5, auxiliary_head=5))


def test_head_with_more_classes_warns_once(ade):
    with LogCapture() as log:
        check_seg_datasets(config_for(ade['root'], decode_head=8))
        check_seg_datasets(config_for(ade['root'], decode_head=8))
    assert log.warnings() == [
        'model.decode_head.num_classes = 8 but the data set has 6 classes (train_dataloader.dataset.metainfo.'
        'classes): trained as configured, the extra outputs (6..7) only ever see negatives and the metric '
        'counts the data set\'s classes; set num_classes = 6 unless that is intended']


def test_dataset_class_metainfo_is_the_default(ade):
    """ADE20KDataset's own 150 classes count when the config gives no metainfo."""
    cfg = config_for(ade['root'])
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.pop('metainfo')
        cfg[split].dataset.type = 'ADE20KDataset'
    with pytest.raises(UserInputError, match=r'model.decode_head.num_classes = 6; model.auxiliary_head.'
                                             r'num_classes = 6 but the data set has 150 classes '
                                             r'\(ADE20KDataset.METAINFO\)'):
        check_seg_datasets(cfg)


def test_train_tool_stops_with_one_line(ade, tmp_path):
    open(ade['imgs'][3], 'wb').close()
    out = tool('tools/train.py', SYNTH, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
               f'train_dataloader.dataset.data_root={ade["root"]}', f'val_dataloader.dataset.data_root={ade["root"]}',
               'model.backbone.init_cfg=None', 'train_cfg.max_iters=2', expect=2)
    assert 'Traceback' not in out
    errors = [line for line in out.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and errors[0].startswith('error: 1 of 6 images cannot be loaded: ')
    assert errors[0].endswith('ADE_train_000003.jpg: empty file (0 bytes) (train_dataloader.dataset)')


def test_standalone_command(ade):
    opts = ['--cfg-options', f'train_dataloader.dataset.data_root={ade["root"]}',
            f'val_dataloader.dataset.data_root={ade["root"]}', f'test_dataloader.dataset.data_root={ade["root"]}']
    out = tool('tools/misc/check_data.py', SYNTH, '--labels', 'all', *opts)
    assert 'train_dataloader.dataset: images 6, annotations 6, labels_checked 6, sixteen_bit 0' in out
    os.remove(ade['anns'][2])
    out = tool('tools/misc/check_data.py', SYNTH, *opts, expect=2)
    assert 'Traceback' not in out and out.strip().splitlines()[-1].startswith('error: 1 of 6 files not found: ')


def _copy_ade(root, tmp_path):
    dst = tmp_path / 'ade'
    shutil.copytree(root, dst)
    return str(dst)


def test_suffix_case_mismatch_names_the_folder_and_counts(seg_cfg, tmp_path):
    from backbones.apis.run import preflight
    from backbones.utils.config import load_config
    root = _copy_ade(seg_cfg[0], tmp_path)
    folder = osp.join(root, 'images', 'training')
    jpgs = sorted(glob.glob(osp.join(folder, '*.jpg')))
    os.rename(jpgs[0], jpgs[0][:-4] + '.JPG')  # mixed: 3 .jpg, 1 .JPG
    cfg = load_config(SEG, _seg_opts(root))
    with pytest.raises(UserInputError, match=rf"{folder}: 1 end in '.JPG' but the suffix is '.jpg' "
                                             r"\(case-sensitive\): only the 3 ending in '.jpg' would be used"):
        preflight(cfg, splits=('train_dataloader',))
    for p in jpgs[1:]:
        os.rename(p, p[:-4] + '.JPG')
    with pytest.raises(UserInputError, match="4 end in '.JPG' .*none would be found"):
        preflight(load_config(SEG, _seg_opts(root)), splits=('train_dataloader',))
    # the control: mmseg's own listing silently takes none (and, mixed, would take 3 of 4)
    from mmseg.datasets import BaseSegDataset
    ds = BaseSegDataset(data_root=root, data_prefix=dict(img_path='images/training',
                                                         seg_map_path='annotations/training'),
                        img_suffix='.jpg', seg_map_suffix='.png', lazy_init=True)
    assert ds.load_data_list() == []


def test_an_all_ignore_validation_set_is_refused(seg_cfg, tmp_path):
    from PIL import Image

    from backbones.apis.run import preflight
    from backbones.utils.config import load_config
    root = _copy_ade(seg_cfg[0], tmp_path)
    for p in glob.glob(osp.join(root, 'annotations', 'validation', '*.png')):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(p)  # 0: ignore under reduce_zero_label
    cfg = load_config(SEG, _seg_opts(root))
    preflight(cfg, splits=('train_dataloader',))
    with pytest.raises(UserInputError, match=r'all 2 checked annotations hold only the ignore label 255 '
                                             r'\(reduce_zero_label.*mIoU: nan'):
        preflight(cfg, splits=('train_dataloader', 'val_dataloader'))


def _dataset(root, pipeline_extra=()):
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(SYNTH)
    ds = cfg.train_dataloader.dataset
    ds.data_root = root
    ds.pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                   dict(type='CheckSegMap', num_classes=6), dict(type='PackSegInputs')]
    with DefaultScope.overwrite_default_scope('mmseg'):
        return DATASETS.build(ds)


def test_annotation_size_mismatch_is_named(tmp_path):
    root = str(tmp_path / 'ade')
    write_ade(root, num_train=3, num_val=1, size=(64, 48))
    ann = sorted(glob.glob(osp.join(root, 'annotations', 'training', '*.png')))[1]
    cv2.imwrite(ann, np.ones((40, 64), np.uint8))
    ds = _dataset(root)
    ds[0]
    from backbones.datasets.checks.segmentation import AnnotationError
    with pytest.raises(AnnotationError, match=r'ADE_train_000001.png: annotation size 64x40 \(WxH\) differs from its '
                                              r'image .*ADE_train_000001.jpg 64x48'):
        ds[1]


def test_labels_outside_the_classes_are_named(tmp_path):
    root = str(tmp_path / 'ade')
    write_ade(root, num_train=2, num_val=1, size=(64, 48))
    ann = sorted(glob.glob(osp.join(root, 'annotations', 'training', '*.png')))[0]
    seg = cv2.imread(ann, 0)
    seg[:4, :4] = 9  # class 8 after reduce_zero_label; the dataset has 6
    cv2.imwrite(ann, seg)
    from backbones.datasets.checks.segmentation import AnnotationError
    with pytest.raises(AnnotationError, match=r'label values \[8\] outside the 6 classes'):
        _dataset(root)[0]


@pytest.mark.slow
def test_bad_dataset_folders_stop_the_tool_with_one_line(tmp_path):
    root = str(tmp_path / 'ade')
    write_ade(root, num_train=4, num_val=2, size=(64, 48))
    ann = sorted(glob.glob(osp.join(root, 'annotations', 'training', '*.png')))[2]
    cv2.imwrite(ann, np.ones((10, 10), np.uint8))
    args = [PY, 'tools/train.py', SYNTH, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
            f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            'model.backbone.init_cfg=None', 'train_dataloader.num_workers=1', 'train_dataloader.batch_size=4',
            'train_dataloader.persistent_workers=False', 'train_cfg.max_iters=3']
    # raised in a dataloader worker, reported as one line: a real process, whose workers' stderr is seen too
    out = run(args, expect=2)
    assert re.search(r'error: .*ADE_train_000002.png: annotation size 10x10 \(WxH\) differs', out)
    assert 'Traceback' not in out
    os.rename(osp.join(root, 'annotations'), osp.join(root, 'labels'))
    out = tool(*args[1:], expect=2)  # (the pre-flight check, before any worker)
    assert re.search(r'error: data path not found: .*/annotations/training '
                     r'\(train_dataloader.dataset.data_prefix.seg_map_path\)', out)

"""The generated COCO-layout data, and what happens with bad annotation files.

For each bad input the test shows what mmdet 3.3 does on its own (silent filtering, or a crash far from the
cause) and what ``backbones.datasets.checks.coco.check_coco_datasets`` (run by the tools before the Runner) reports.
"""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from backbones.datasets.checks.coco import check_coco_annotations, check_coco_datasets
from backbones.datasets.synthetic import write_coco
from backbones.engine.mmengine_fixes import fallback_syncbn_on_cpu
from backbones.utils.errors import AnnotationError, DatasetError, UserInputError
from tests.helpers import REPO
from tests.helpers.logs import LogCapture

CONFIG = osp.join(REPO, 'configs', 'mask-rcnn_inceptionnext-atto_fpn_500iter_synthetic-coco.py')
CLASSES = ('rectangle', 'disc', 'triangle')


pytestmark = pytest.mark.usefixtures('mmdet_registered')


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    write_coco(root, num_train=8, num_val=4, size=(160, 128), num_classes=3, seed=3)
    return root


def config_for(root, train_ann='annotations/instances_train2017.json', **train_ds):
    cfg = Config.fromfile(CONFIG)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = root + '/'
    cfg.train_dataloader.dataset.ann_file = train_ann
    cfg.train_dataloader.dataset.update(train_ds)
    return cfg


def dataset(cfg, split='train_dataloader'):
    from mmdet.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(cfg[split].dataset)


def bad_file(root, name, edit):
    """A copy of the train annotations with ``edit(data)`` applied; returns its path relative to root."""
    with open(osp.join(root, 'annotations', 'instances_train2017.json')) as f:
        data = json.load(f)
    edit(data)
    rel = f'annotations/{name}.json'
    with open(osp.join(root, rel), 'w') as f:
        json.dump(data, f)
    return rel


def anns_of(data, img_id):
    return [a for a in data['annotations'] if a['image_id'] == img_id]


def num_instances(ds):
    return sum(len(ds.get_data_info(i)['instances']) for i in range(len(ds)))


def one_loss_step(cfg, ds, indices):
    """A real Mask R-CNN-atto loss + backward on dataset items (mmdet pipeline, collate, preprocessor)."""
    from mmdet.registry import MODELS
    from mmengine.dataset import pseudo_collate
    fallback_syncbn_on_cpu(cfg)
    cfg.model.backbone.init_cfg = None
    for k in ('rpn_head.in_channels', 'rpn_head.feat_channels', 'roi_head.bbox_roi_extractor.out_channels',
              'roi_head.bbox_head.in_channels', 'roi_head.mask_roi_extractor.out_channels',
              'roi_head.mask_head.in_channels', 'roi_head.mask_head.conv_out_channels', 'neck.out_channels'):
        node = cfg.model
        *path, last = k.split('.')
        for p in path:
            node = node[p]
        node[last] = 32
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
        batch = pseudo_collate([ds[i] for i in indices])
        data = model.data_preprocessor(batch, True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    assert torch.isfinite(loss)
    return batch


# --------------------------------------------------------------------------------------------------
def test_generated_layout_and_exact_annotations(root):
    from pycocotools.coco import COCO
    for split, n in (('train2017', 8), ('val2017', 4)):
        ann = osp.join(root, 'annotations', f'instances_{split}.json')
        coco = COCO(ann)
        assert len(coco.getImgIds()) == n
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
        for img in coco.loadImgs(coco.getImgIds()):
            assert osp.isfile(osp.join(root, split, img['file_name']))
            assert (img['width'], img['height']) == (160, 128)
        for a in coco.loadAnns(coco.getAnnIds()):
            x, y, w, h = a['bbox']
            m = coco.annToMask(a).astype(bool)
            ys, xs = np.nonzero(m)
            # the box is the polygon's extent: the rasterised mask fills it to within a pixel
            assert xs.min() >= x - 1 and xs.max() <= x + w + 1 and ys.min() >= y - 1 and ys.max() <= y + h + 1
            assert xs.min() <= x + 1.5 and xs.max() >= x + w - 2.5
            assert ys.min() <= y + 1.5 and ys.max() >= y + h - 2.5
            assert abs(m.sum() - a['area']) <= 0.05 * a['area'] + 10  # polygon area vs its rasterised mask
        check_coco_annotations(ann, osp.join(root, split), CLASSES, with_mask=True)  # clean data passes
    counts = dict(check_coco_datasets(config_for(root)))
    train = counts['train_dataloader.dataset']
    assert train['objects'] == train['annotations'] > 8


def test_coco_dataset_and_pipeline_read_it(root):
    cfg = config_for(root)
    ds = dataset(cfg)
    assert ds.metainfo['classes'] == CLASSES and len(ds) == 8
    with open(osp.join(root, 'annotations', 'instances_train2017.json')) as f:
        data = json.load(f)
    info = ds.get_data_info(0)
    raw = anns_of(data, info['img_id'])
    assert [i['bbox_label'] for i in info['instances']] == [a['category_id'] - 1 for a in raw]
    item = ds[0]['data_samples']
    assert len(item.gt_instances) == len(raw) and item.gt_instances.masks.masks.shape[0] == len(raw)


def test_box_entirely_outside_its_image(root):
    """mmdet drops it silently; the check names the annotation and its box."""
    rel = bad_file(root, 'outside', lambda d: d['annotations'][0].update(bbox=[300.0, 200.0, 20.0, 20.0]))
    cfg = config_for(root, rel)
    assert num_instances(dataset(cfg)) == num_instances(dataset(config_for(root))) - 1  # silently gone
    with pytest.raises(UserInputError, match=r'outside.json: 1 boxes entirely outside their image: '
                                             r'annotation 1 \(image 000000000001.jpg, 160x128\): '
                                             r'bbox .*\[300.0, 200.0, 20.0, 20.0\]'):
        check_coco_datasets(cfg)


def test_box_partly_outside_its_image_is_clipped(root, caplog):
    """mmdet keeps it and Resize clips it to the image (clip_object_border); the check says so; it trains."""
    def edit(d):
        a = d['annotations'][0]
        a['bbox'] = [a['bbox'][0], a['bbox'][1], 400.0, a['bbox'][3]]
    cfg = config_for(root, bad_file(root, 'partly_outside', edit))
    counts = dict(check_coco_datasets(cfg))['train_dataloader.dataset']
    assert counts['clipped'] == 1
    ds = dataset(cfg)
    batch = one_loss_step(cfg, ds, [0, 1])
    boxes = batch['data_samples'][0].gt_instances.bboxes.tensor
    h, w = batch['data_samples'][0].img_shape
    assert boxes[:, 2].max() <= w and boxes[:, 3].max() <= h


def test_image_without_objects(root):
    """filter_empty_gt leaves it out of training (mmdet's documented filtering), evaluation keeps it; without
    the filter it trains as background. The check reports it and does not fail."""
    cfg = config_for(root, bad_file(root, 'empty', lambda d: d.update(
        annotations=[a for a in d['annotations'] if a['image_id'] != 1])))
    counts = dict(check_coco_datasets(cfg))['train_dataloader.dataset']
    assert counts['empty_images'] == 1
    assert len(dataset(cfg)) == 7
    cfg.val_dataloader.dataset.ann_file = cfg.train_dataloader.dataset.ann_file
    assert len(dataset(cfg, 'val_dataloader')) == 8  # test_mode: no filtering
    cfg.train_dataloader.dataset.filter_cfg = dict(filter_empty_gt=False, min_size=32)
    ds = dataset(cfg)
    assert len(ds) == 8 and ds.get_data_info(0)['instances'] == []
    batch = one_loss_step(cfg, ds, [0, 1])  # an image with no objects next to one with objects
    assert len(batch['data_samples'][0].gt_instances) == 0


def test_category_id_not_in_categories(root):
    """mmdet drops the object silently; the check names it and the known ids."""
    rel = bad_file(root, 'bad_category', lambda d: d['annotations'][2].update(category_id=7))
    cfg = config_for(root, rel)
    assert num_instances(dataset(cfg)) == num_instances(dataset(config_for(root))) - 1
    with pytest.raises(UserInputError, match=r'1 annotations with a category_id not in "categories" '
                                             r'\(ids: 1, 2, 3\): annotation 3 \(image .*\.jpg\) '
                                             r'-> category_id 7'):
        check_coco_datasets(cfg)


def test_missing_image_file(root):
    """mmdet fails only when a dataloader worker reaches the image (the configs' LoadImageFromFileChecked
    then names it); the check lists missing files up front."""
    rel = bad_file(root, 'missing_image', lambda d: d['images'][1].update(file_name='gone.jpg'))
    cfg = config_for(root, rel)
    ds = dataset(cfg)
    with pytest.raises(DatasetError, match='image file not found: .*gone.jpg'):
        ds[1]
    with pytest.raises(UserInputError, match=r'1 of 8 image files not found: .*train2017/gone.jpg'):
        check_coco_datasets(cfg)


def test_class_names_not_in_categories(root):
    """Config classes that the file does not have (e.g. metainfo forgotten: COCO's 80 names) leave nothing to
    train on; mmdet then crashes in MMEngine's serialisation with an unrelated message."""
    cfg = config_for(root)
    cfg.train_dataloader.dataset.metainfo = None  # COCO's 80 class names apply
    with pytest.raises(ValueError, match='need at least one array to concatenate'):
        dataset(cfg)
    with pytest.raises(UserInputError, match=r"class names of the config not in the file's categories: "
                                             r'person, bicycle.*\(80 in all\); the file has .*'
                                             r'no metainfo=dict\(classes'):
        check_coco_datasets(cfg)


def test_object_without_segmentation_when_masks_are_trained(root):
    """mmdet's LoadAnnotations(with_mask=True) raises KeyError: 'mask' mid-training; the check names it."""
    cfg = config_for(root, bad_file(root, 'no_mask', lambda d: d['annotations'][0].pop('segmentation')))
    ds = dataset(cfg)
    with pytest.raises(KeyError, match='mask'):
        ds[0]
    with pytest.raises(UserInputError, match=r'1 annotations without a segmentation .*: annotation 1 '):
        check_coco_datasets(cfg)


def test_unreadable_and_incomplete_files(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"images": [')
    with pytest.raises(UserInputError, match='is not a JSON file'):
        check_coco_annotations(str(bad))
    bad.write_text(json.dumps(dict(images=[], annotations=[])))
    with pytest.raises(UserInputError, match="not a COCO instances file: no list 'categories'"):
        check_coco_annotations(str(bad))
    with pytest.raises(UserInputError, match='annotation file not found'):
        check_coco_annotations(str(tmp_path / 'none.json'))
    data = dict(images=[dict(id=1, file_name='a.jpg', width=10, height=10)],
                annotations=[dict(id=1, image_id=2, category_id=1, bbox=[0, 0, 5, 5], area=25)],
                categories=[dict(id=1, name='a')])
    bad.write_text(json.dumps(data))
    with pytest.raises(UserInputError, match=r'images not in "images": annotation 1 -> image_id 2'):
        check_coco_annotations(str(bad))
    data['annotations'][0]['image_id'] = 1
    data['images'][0].pop('width')
    bad.write_text(json.dumps(data))
    with pytest.raises(UserInputError, match=r'image 1 \(a.jpg\) has no positive "width"/"height"'):
        check_coco_annotations(str(bad))

    data['images'][0]['width'] = 10
    for categories, message in (([dict(name='a')], 'a category entry without "id"'),
                                ([dict(id=1, name='a'), dict(id=1, name='b')], 'category id 1 appears twice')):
        bad.write_text(json.dumps({**data, 'categories': categories}))
        with pytest.raises(UserInputError, match=message):
            check_coco_annotations(str(bad))
    bad.write_text(json.dumps({**data, 'annotations': [[1, 0, 0, 5, 5]]}))
    with pytest.raises(UserInputError, match='an annotation entry that is not an object'):
        check_coco_annotations(str(bad))
    data['annotations'][0]['bbox'] = [2, 2, 5, 5]
    bad.write_text(json.dumps(data))
    assert check_coco_annotations(str(bad))  # and the repaired file passes


# --------------------------------------------------------------------------------------------------
# Images that do not match their entry, masks mmdet drops or cannot decode, heads that do not match
# --------------------------------------------------------------------------------------------------
def exif_rotated_copy(root, name, orientation=6):
    """A copy of the first training image under ``name``, its pixels as stored, with an EXIF orientation."""
    from PIL import Image
    with open(osp.join(root, 'annotations', 'instances_train2017.json')) as f:
        first = json.load(f)['images'][0]['file_name']
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.open(osp.join(root, 'train2017', first)).save(osp.join(root, 'train2017', name), exif=exif.tobytes(),
                                                       quality=95)
    return name


def test_exif_rotated_image_differs_from_its_entry(root):
    """The loader applies the EXIF orientation (mmcv's imfrombytes with color_type 'color', cv2 or pillow):
    the image arrives rotated while boxes and polygons are of the stored 160x128 pixels, and mmdet says
    nothing. The check reads the header and names the file, both sizes and the orientation."""
    name = exif_rotated_copy(root, 'rotated.jpg')
    rel = bad_file(root, 'exif', lambda d: d['images'][0].update(file_name=name))
    cfg = config_for(root, rel)
    sample = dataset(cfg)[0]['data_samples']
    assert sample.ori_shape == (160, 128)  # (h, w): turned, while its entry says 160x128 (WxH)
    with pytest.raises(AnnotationError, match=r'exif.json: 1 of 8 images differ in size from their entry in '
                                              r'"images" .*train2017/rotated.jpg: annotation 160x128 \(WxH\), '
                                              r'decoded 128x160 \(EXIF orientation 6 rotates the stored '
                                              r"160x128 pixels .*color_type='color_ignore_orientation'"):
        check_coco_datasets(cfg)
    # loaded without the orientation (as the hint says), the image fits its entry: the check passes
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.pipeline[0].color_type = 'color_ignore_orientation'
    check_coco_datasets(cfg)
    assert dataset(cfg)[0]['data_samples'].ori_shape == (128, 160)


def test_unreadable_image_files(root):
    """An empty or truncated JPEG: mmcv fails in a worker (OpenCV's "!buf.empty()" assertion, no file named).
    The check names it; the configs' LoadImageFromFileChecked names it when it is reached."""
    import shutil
    first = osp.join(root, 'train2017', '000000000001.jpg')
    open(osp.join(root, 'train2017', 'empty.jpg'), 'wb').close()
    data = open(first, 'rb').read()
    open(osp.join(root, 'train2017', 'cut.jpg'), 'wb').write(data[:len(data) // 2])
    shutil.copy(first, osp.join(root, 'train2017', 'tail.jpg'))
    with open(osp.join(root, 'train2017', 'tail.jpg'), 'ab') as f:
        f.write(b'\0' * 4096)  # data after the end marker: decodes, not an error
    for name, message in (('empty.jpg', r'empty.jpg: empty file \(0 bytes\)'),
                          ('cut.jpg', r'cut.jpg: truncated \(no JPEG end-of-image marker\) and does not decode')):
        cfg = config_for(root, bad_file(root, 'unreadable', lambda d: d['images'][0].update(file_name=name)))
        with pytest.raises(DatasetError, match=r'1 of 8 images cannot be loaded: .*train2017/' + message):
            check_coco_datasets(cfg)
        with pytest.raises(DatasetError, match=r'train2017/%s: cannot load the image' % name):
            dataset(cfg)[0]
        cfg.train_dataloader.dataset.pipeline[0] = dict(type='LoadImageFromFile')  # mmcv's own (no _scope_)
        with pytest.raises(Exception) as e:
            dataset(cfg)[0]
        assert not isinstance(e.value, DatasetError)
    cfg = config_for(root, bad_file(root, 'unreadable', lambda d: d['images'][0].update(file_name='tail.jpg')))
    check_coco_datasets(cfg)
    dataset(cfg)[0]


def test_polygons_of_fewer_than_3_points(root):
    """mmdet keeps the object in the dataset but LoadAnnotations ignores it (no polygon of >= 3 points left):
    the check counts it as mmdet does (not an object to train on) and names it in the log; a short polygon
    next to a good one is left out of the mask, the object trains."""
    def edit(d):
        d['annotations'][0]['segmentation'] = [[10.0, 10.0, 30.0, 30.0]]  # 2 points
        d['annotations'][1]['segmentation'].append([5.0, 5.0, 6.0, 6.0])
    cfg = config_for(root, bad_file(root, 'short_polygon', edit))
    clean = dict(check_coco_datasets(config_for(root)))['train_dataloader.dataset']
    ds = dataset(cfg)
    sample = ds[0]['data_samples']  # image 1 holds annotations 1 and 2
    assert len(ds.get_data_info(0)['instances']) == 4  # all kept by CocoDataset, then
    assert len(sample.ignored_instances) == 1 and len(sample.gt_instances) == 3  # ignored by LoadAnnotations
    with LogCapture() as log:
        counts = dict(check_coco_datasets(cfg))['train_dataloader.dataset']
    assert counts['objects'] == clean['objects'] - 1
    assert counts['bad_polygons'] == 1 and counts['dropped_polygons'] == 1
    assert re.search(r"short_polygon.json: .*1 objects whose polygons all have fewer than 3 points \(not trained "
                     r"on: mmdet's LoadAnnotations ignores them\): annotation 1 \(image 000000000001.jpg\): "
                     r'polygons of \[4\] coordinates', log.text)
    assert '1 polygons of fewer than 3 points left out of their object\'s mask' in log.text


def test_crowd_rle_of_another_size(root):
    """A crowd RLE whose size is not its image's: mmdet decodes it at its own size and fails in the worker
    when the masks are stacked; the check names the annotation, the file and both sizes."""
    import pycocotools.mask as mask_utils
    m = np.zeros((64, 64), np.uint8, order='F')
    m[10:20, 10:30] = 1
    rle = mask_utils.encode(m)
    rle['counts'] = rle['counts'].decode()
    cfg = config_for(root, bad_file(root, 'rle_size', lambda d: d['annotations'][0].update(
        segmentation=rle, iscrowd=1)))
    with pytest.raises(ValueError, match='all input arrays must have the same shape|cannot reshape array'):
        dataset(cfg)[0]
    with pytest.raises(AnnotationError, match=r'rle_size.json: 1 RLE masks whose size differs from their '
                                              r'image\'s .*: annotation 1 \(image 000000000001.jpg\): RLE size '
                                              r'64x64, image 160x128 \(WxH\)'):
        check_coco_datasets(cfg)
    full = mask_utils.encode(np.asfortranarray(np.pad(m, ((0, 64), (0, 96)))))  # 128x160, as its image
    full['counts'] = full['counts'].decode()
    cfg = config_for(root, bad_file(root, 'rle_size', lambda d: d['annotations'][0].update(
        segmentation=full, iscrowd=1)))
    assert dict(check_coco_datasets(cfg))['train_dataloader.dataset']['crowd'] == 1
    dataset(cfg)[0]


@pytest.mark.parametrize('heads, message', [
    (dict(roi_head=dict(bbox_head=dict(num_classes=80), mask_head=dict(num_classes=80))),
     r'model.roi_head.bbox_head.num_classes = 80; model.roi_head.mask_head.num_classes = 80 but the data set '
     r'has 3 classes \(train_dataloader.dataset.metainfo.classes\): training would run to its end and then fail '
     r'in evaluation \(CocoMetric has no category for labels 3..79\); set num_classes = 3'),
    (dict(roi_head=dict(bbox_head=dict(num_classes=2), mask_head=dict(num_classes=3))),
     r'model.roi_head.bbox_head.num_classes = 2 but the data set has 3 classes \(train_dataloader.dataset.'
     r'metainfo.classes\): label 2 would have no output in the head \(an IndexError in the loss\)'),
    (dict(roi_head=dict(bbox_head=[dict(num_classes=3), dict(num_classes=3), dict(num_classes=5)],
                        mask_head=dict(num_classes=3))),
     r'model.roi_head.bbox_head.2.num_classes = 5 but the data set has 3 classes'),
    (dict(bbox_head=dict(type='RetinaHead', num_classes=1)),
     r'model.bbox_head.num_classes = 1 but the data set has 3 classes .*labels 1..2 would have no output'),
], ids=['more', 'fewer', 'cascade', 'retinanet'])
def test_head_classes_differ_from_the_data_set(root, heads, message):
    """More head classes than data classes: trains to the end, then CocoMetric.results2json fails (IndexError);
    fewer: an IndexError in the loss. Both are errors before training, naming the keys and both numbers."""
    cfg = config_for(root)
    cfg.model.pop('roi_head')
    cfg.model.update(heads)
    with pytest.raises(UserInputError, match=message):
        check_coco_datasets(cfg)
    cfg = config_for(root)  # the synthetic config's own heads fit its 3 classes
    check_coco_datasets(cfg)


def test_train_tool_stops_with_one_line(root, tmp_path):
    """tools/train.py runs the check before the Runner: one ``error:`` line, exit 2, no traceback."""
    from tests.helpers.tool import tool
    name = exif_rotated_copy(root, 'rotated_cli.jpg', orientation=8)
    rel = bad_file(root, 'exif_cli', lambda d: d['images'][2].update(file_name=name))
    out = tool('tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
               f'train_dataloader.dataset.data_root={root}/', f'val_dataloader.dataset.data_root={root}/',
               f'train_dataloader.dataset.ann_file={rel}', 'model.backbone.init_cfg=None', expect=2)
    assert 'Traceback' not in out
    errors = [line for line in out.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, out[-3000:]
    assert re.match(r'error: .*exif_cli.json: 1 of 8 images differ in size from their entry in "images" .*'
                    r'train2017/rotated_cli.jpg: annotation 160x128 \(WxH\), decoded 128x160 \(EXIF orientation 8 '
                    r'.*\(train_dataloader.dataset\)$', errors[0]), errors[0]


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory, mmdet_registered):
    from backbones.datasets.synthetic import write_coco
    root = str(tmp_path_factory.mktemp('coco'))
    write_coco(root, num_train=4, num_val=2, size=(96, 64), seed=1)
    return root


def _coco_cfg(root, val_ann):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mask-rcnn_inceptionnext-atto_fpn_500iter_synthetic-coco.py'))
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = root + '/'
    cfg.val_dataloader.dataset.ann_file = val_ann
    cfg.val_evaluator.ann_file = osp.join(root, val_ann)
    return cfg


def _edited(root, name, edit):
    with open(osp.join(root, 'annotations', 'instances_val2017.json')) as f:
        data = json.load(f)
    edit(data)
    with open(osp.join(root, 'annotations', name), 'w') as f:
        json.dump(data, f)
    return f'annotations/{name}'


def test_coco_keys_that_pycocotools_needs_and_negative_boxes(coco_root):
    from backbones.datasets.checks.coco import check_coco_datasets

    def no_iscrowd(data):
        for a in data['annotations']:
            a.pop('iscrowd')

    cfg = _coco_cfg(coco_root, _edited(coco_root, 'no_crowd.json', no_iscrowd))
    check_coco_datasets(cfg, splits=('train_dataloader',))  # training reads it with .get(): fine
    with pytest.raises(UserInputError, match=r'annotations have no "iscrowd" .*KeyError at the first validation'
                                             r' \(add "iscrowd": 0'):
        check_coco_datasets(cfg, splits=('train_dataloader', 'val_dataloader'))
    # the control: pycocotools' evaluation does fail on that file
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(cfg.val_evaluator.ann_file)
    ann = gt.dataset['annotations'][0]
    dt = gt.loadRes([dict(image_id=ann['image_id'], category_id=ann['category_id'], bbox=ann['bbox'], score=1.0)])
    with pytest.raises(KeyError, match='iscrowd'):
        ev = COCOeval(gt, dt, 'bbox')
        ev.evaluate()

    def negative(data):
        data['annotations'][0]['bbox'][2] = -5.0

    cfg = _coco_cfg(coco_root, _edited(coco_root, 'negative.json', negative))
    with pytest.raises(UserInputError, match=r'1 boxes of negative width or height .*not two corners'):
        check_coco_datasets(cfg, splits=('val_dataloader',))

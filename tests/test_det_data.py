"""The generated COCO-layout data, and what happens with bad annotation files.

For each bad input the test shows what mmdet 3.3 does on its own (silent filtering, or a crash far from the
cause) and what ``backbones.coco_checks.check_coco_datasets`` (run by the tools before the Runner) reports.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from backbones.coco_checks import check_coco_annotations, check_coco_datasets
from backbones.errors import UserInputError
from backbones.runtime import fallback_syncbn_on_cpu
from backbones.synthetic import write_coco

from .conftest import REPO

CONFIG = osp.join(REPO, 'configs', 'mask-rcnn_inceptionnext-atto_fpn_synthetic-coco.py')
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
    from mmengine.dataset import pseudo_collate

    from mmdet.registry import MODELS
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
    """mmdet fails only when a dataloader worker reaches the image; the check lists missing files up front."""
    rel = bad_file(root, 'missing_image', lambda d: d['images'][1].update(file_name='gone.jpg'))
    cfg = config_for(root, rel)
    ds = dataset(cfg)
    with pytest.raises(FileNotFoundError, match='gone.jpg'):
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

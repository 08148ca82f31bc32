"""train_cls data: the ImageNet folder / file-list dataset, timm's transforms, the scope, and bad input."""
import os
import subprocess
import sys
import warnings

import pytest
import torch
from mmengine.dataset import pseudo_collate
from torch.utils.data import DataLoader

from backbones.datasets.synthetic import CLASSES, wnid, write_imagenet
from tests.helpers import REPO
from tests.helpers.tool import tool
from train_cls import DatasetError, ImageNet, UnreadableImageError, UnreadableImageWarning

PIPE_TRAIN = [dict(type='LoadImagePIL'),
              dict(type='TimmTransform', input_size=48, is_training=True, auto_augment='rand-m9-mstd0.5-inc1'),
              dict(type='PackClsInputs')]
PIPE_VAL = [dict(type='LoadImagePIL'), dict(type='TimmTransform', input_size=48, crop_pct=0.875),
            dict(type='PackClsInputs')]


@pytest.fixture
def root(tmp_path):
    write_imagenet(str(tmp_path / 'in'), num_classes=4, num_train=3, num_val=2, size=40, seed=1)
    return tmp_path / 'in'


def test_folder_layout_labels_and_samples(root):
    ds = ImageNet(data_root=str(root), data_prefix=dict(img_path='train'), pipeline=PIPE_TRAIN)
    assert ds.metainfo['classes'] == tuple(wnid(i) for i in range(4))
    assert len(ds) == 12
    for i in range(len(ds)):  # label = index of the sorted wnid folder the file is in
        info = ds.get_data_info(i)
        assert ds.metainfo['classes'][info['gt_label']] == os.path.basename(os.path.dirname(info['img_path']))
    item = ds[5]
    assert item['inputs'].dtype == torch.uint8 and item['inputs'].shape == (3, 48, 48)
    assert item['data_samples']['gt_label'] == ds.get_data_info(5)['gt_label']


def test_file_list_variant_equals_folders(root):
    folders = ImageNet(data_root=str(root), data_prefix=dict(img_path='val'), classes='train',
                       pipeline=PIPE_VAL, test_mode=True)
    listed = ImageNet(data_root=str(root), data_prefix=dict(img_path='val'), ann_file='meta/val.txt',
                      classes='meta/classes.txt', pipeline=PIPE_VAL, test_mode=True)
    a = sorted((d['img_path'], d['gt_label']) for d in (folders.get_data_info(i) for i in range(len(folders))))
    b = sorted((d['img_path'], d['gt_label']) for d in (listed.get_data_info(i) for i in range(len(listed))))
    assert a == b and len(a) == 8
    assert listed.metainfo['classes'] == folders.metainfo['classes']
    same = listed_index(listed, folders.get_data_info(0)['img_path'])
    assert torch.equal(folders[0]['inputs'], listed[same]['inputs'])


def listed_index(ds, path):
    return next(i for i in range(len(ds)) if ds.get_data_info(i)['img_path'] == path)


def test_timm_eval_transform_resize_and_crop():
    """Eval: resize the short side to input_size / crop_pct (bicubic), then centre-crop: timm's numbers."""
    from train_cls import TimmTransform
    t = repr(TimmTransform(input_size=224, crop_pct=0.875))
    assert 'size=256' in t and 'CenterCrop(size=(224, 224))' in t and 'bicubic' in t
    assert 'size=224' in repr(TimmTransform(input_size=224, crop_pct=1.0))
    t = repr(TimmTransform(input_size=224, is_training=True, auto_augment='rand-m9-mstd0.5-inc1'))
    assert 'RandomResizedCropAndInterpolation' in t and 'RandAugment' in t and 'Normalize' not in t
    with pytest.raises(ValueError, match='random erasing'):
        TimmTransform(input_size=224, is_training=True, re_prob=0.25)


# -------------------------------------------------------------------------------------------------
# Bad input
# -------------------------------------------------------------------------------------------------
def test_empty_class_folder_is_an_error_naming_it(root):
    empty = root / 'train' / 'n9999999'
    empty.mkdir()
    (empty / 'readme.txt').write_text('not an image')
    with pytest.raises(DatasetError, match=r'1 empty class folder.*n9999999'):
        ImageNet(data_root=str(root), data_prefix=dict(img_path='train'), pipeline=PIPE_TRAIN)
    # Opt-in: the folder keeps its class index (so the indices still match the val split), no images.
    ds = ImageNet(data_root=str(root), data_prefix=dict(img_path='train'), pipeline=PIPE_TRAIN,
                  allow_empty_classes=True)
    assert ds.metainfo['classes'][-1] == 'n9999999' and len(ds) == 12


def test_unreadable_image_skipped_in_training_with_a_warning(root):
    bad = root / 'train' / wnid(2) / f'{wnid(2)}_1.JPEG'
    bad.write_bytes(bad.read_bytes()[:300])  # truncated JPEG
    ds = ImageNet(data_root=str(root), data_prefix=dict(img_path='train'), pipeline=PIPE_TRAIN)
    idx = listed_index(ds, str(bad))
    with pytest.warns(UnreadableImageWarning, match=f'cannot read image {bad}'):
        item = ds[idx]  # MMEngine draws another sample instead
    assert item['data_samples']['img_path'] != str(bad)
    # a whole epoch through a DataLoader completes, every batch full
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        batches = list(DataLoader(ds, batch_size=4, shuffle=False, collate_fn=pseudo_collate))
    assert [len(b['inputs']) for b in batches] == [4, 4, 4]
    assert any(issubclass(w.category, UnreadableImageWarning) for w in caught)
    assert ds.num_skipped >= 2


def test_unreadable_image_in_val_is_an_error_naming_it(root):
    bad = next((root / 'val' / wnid(1)).iterdir())
    bad.write_bytes(b'this is no jpeg')
    ds = ImageNet(data_root=str(root), data_prefix=dict(img_path='val'), classes='train', pipeline=PIPE_VAL,
                  test_mode=True)
    with pytest.raises(UnreadableImageError, match=rf'cannot read image {bad}.*val split'):
        ds[listed_index(ds, str(bad))]


def test_val_classes_that_differ_from_train(root):
    os.rename(root / 'val' / wnid(3), root / 'val' / 'n8888888')
    with pytest.raises(DatasetError, match=r'val split has class folders .*: n8888888'):
        ImageNet(data_root=str(root), data_prefix=dict(img_path='val'), classes='train', pipeline=PIPE_VAL,
                 test_mode=True)
    # A val split that lacks a class keeps the train indices (mapped by name, not renumbered).
    (root / 'val' / 'n8888888').rename(root / 'tmp_out')
    ds = ImageNet(data_root=str(root), data_prefix=dict(img_path='val'), classes='train', pipeline=PIPE_VAL,
                  test_mode=True)
    assert len(ds.metainfo['classes']) == 4 and len(ds) == 6
    os.rename(root / 'val' / wnid(0), root / 'val' / 'zz')  # ... but renamed folders are caught
    with pytest.raises(DatasetError, match='zz'):
        ImageNet(data_root=str(root), data_prefix=dict(img_path='val'), classes='train', pipeline=PIPE_VAL,
                 test_mode=True)


def test_bad_ann_file_and_missing_folder(root):
    ann = root / 'meta' / 'bad.txt'
    ann.write_text(f'{wnid(0)}/{wnid(0)}_0.JPEG 0\n{wnid(1)}/{wnid(1)}_0.JPEG\n')
    with pytest.raises(DatasetError, match=r'bad.txt:2: expected "relative/path label"'):
        ImageNet(data_root=str(root), data_prefix=dict(img_path='train'), ann_file='meta/bad.txt',
                 classes='train', pipeline=PIPE_TRAIN)
    ann.write_text(f'{wnid(0)}/{wnid(0)}_0.JPEG 7\n')
    with pytest.raises(DatasetError, match=r'bad.txt:1: label 7 outside 0..3'):
        ImageNet(data_root=str(root), data_prefix=dict(img_path='train'), ann_file='meta/bad.txt',
                 classes='train', pipeline=PIPE_TRAIN)
    with pytest.raises(DatasetError, match='image folder not found'):
        ImageNet(data_root=str(root), data_prefix=dict(img_path='nope'), pipeline=PIPE_TRAIN)


# -------------------------------------------------------------------------------------------------
# The scope
# -------------------------------------------------------------------------------------------------
@pytest.mark.slow  # a fresh interpreter
def test_default_scope_imports_train_cls_registry(root):
    """A fresh interpreter: with default scope train_cls, MMEngine's root registries import and find our
    classes (no explicit `import train_cls`), and the child registries still find MMEngine's own."""
    code = f'''
import sys
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS, OPTIMIZERS, DefaultScope, RUNNERS
assert 'train_cls' not in sys.modules
DefaultScope.get_instance('t', scope_name='train_cls')
m = MODELS.build(dict(type='InceptionNeXtClassifier', backbone=dict(type='InceptionNeXt', arch='atto'),
                      head=dict(type='MlpHead', num_classes=4)))
print(type(m).__module__, sorted(m.state_dict())[0], m.head.fc1.out_features)
ds = DATASETS.build(dict(type='ImageNet', data_root={str(root)!r}, data_prefix=dict(img_path='train'),
                         pipeline=[dict(type='LoadImagePIL'), dict(type='TimmTransform', input_size=32),
                                   dict(type='PackClsInputs')]))
print(len(ds), type(METRICS.build(dict(type='Accuracy'))).__module__)
print(type(HOOKS.build(dict(type='EMAHook'))).__name__, OPTIMIZERS.get('AdamW').__name__,
      RUNNERS.get('RobustRunner').__name__, type(HOOKS.build(dict(type='RNGStateHook'))).__module__)
'''
    r = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.split('\n')
    assert lines[0] == 'train_cls.model backbone.stages.0.blocks.0.gamma 960'  # head mlp ratio 3 x 320
    assert lines[1] == '12 train_cls.metrics'
    assert lines[2] == 'EMAHook AdamW RobustRunner backbones.engine.hooks'
    assert 'Failed to search registry' not in r.stdout + r.stderr


def test_synthetic_imagenet_cli(tmp_path):
    tool('tools/misc/synthetic_data.py', 'imagenet', tmp_path / 'd', '--classes', '3', '--train', '2', '--val', '1',
         '--size', '32')
    assert sorted(os.listdir(tmp_path / 'd' / 'train')) == [wnid(0), wnid(1), wnid(2)]
    assert len(os.listdir(tmp_path / 'd' / 'val' / wnid(2))) == 1
    assert (tmp_path / 'd' / 'meta' / 'train.txt').read_text().split('\n')[0] == f'{wnid(0)}/{wnid(0)}_0.JPEG 0'
    assert CLASSES[:3] == ('rectangle', 'disc', 'triangle')


# ---- RandAugment over the whole range its magnitudes reach ------------------------------------------------

def test_posterize_at_every_level_timm_draws():
    """timm's posterize levels keep 8..0 bits; 0 (magnitude 10) is an all-zero image, 1-7 Pillow's."""
    from PIL import Image, ImageOps

    from train_cls.transforms import posterize_keep_bits
    img = Image.effect_noise((16, 12), 60).convert('RGB')
    assert posterize_keep_bits(img, 8) is img
    for bits in range(1, 8):
        assert posterize_keep_bits(img, bits).tobytes() == ImageOps.posterize(img, bits).tobytes()
    black = posterize_keep_bits(img, 0)
    assert black.mode == 'RGB' and black.size == img.size and not any(black.tobytes())


def test_randaugment_posterize_at_magnitude_10():
    """The op a config's RandAugment holds, at magnitude 10 (every draw): the black image, not an error."""
    from PIL import Image

    from train_cls import TimmTransform
    from train_cls.transforms import _augment_ops
    t = TimmTransform(input_size=32, is_training=True, auto_augment='rand-m10-inc1')
    ops = [op for x in t.transform.transforms for op in _augment_ops(x) if op.name == 'PosterizeIncreasing']
    assert len(ops) == 1
    ops[0].prob = 1.0
    out = ops[0](Image.new('RGB', (20, 10), (200, 100, 50)))
    assert not any(out.tobytes())


def _in1k_train_pipelines():
    from mmengine.config import Config
    cfgs = sorted(p for p in os.listdir(os.path.join(REPO, 'configs'))
                  if p.startswith('inceptionnext-') and ('_in1k.py' in p or '_in1k-' in p))
    assert len(cfgs) == 5, cfgs
    return [(c, Config.fromfile(os.path.join(REPO, 'configs', c)).train_dataloader.dataset.pipeline)
            for c in cfgs]


@pytest.mark.slow  # 8000 samples of each shipped recipe's pipeline: ~25 s
def test_every_in1k_training_pipeline_survives_8000_samples(tmp_path, monkeypatch):
    """Every shipped in1k recipe's training pipeline, its steps as configured (only the output side is
    32 px: the ops drawn and their magnitudes do not depend on it), over 8000 seeded samples. The count of
    0-bit posterize calls shows the draw reached the case that stopped Pillow 13 (magnitude 10: reachable
    with ``mstd0.5``; atto's ``mstd101`` draws uniformly up to 5 and never meets it)."""
    import random

    import numpy as np
    from mmengine.dataset import Compose
    from PIL import Image

    import train_cls.transforms as tr
    from train_cls.registry import TRANSFORMS
    zero_bits, guarded = [], tr.posterize_keep_bits

    def counting(img, bits_to_keep, **kw):
        if bits_to_keep <= 0:
            zero_bits.append(1)
        return guarded(img, bits_to_keep, **kw)

    monkeypatch.setattr(tr, 'posterize_keep_bits', counting)
    path = str(tmp_path / 'x.jpg')
    Image.effect_noise((64, 48), 50).convert('RGB').save(path)
    for name, steps in _in1k_train_pipelines():
        steps = [dict(s, input_size=32) if s['type'] == 'TimmTransform' else s for s in steps]
        pipe = Compose([TRANSFORMS.build(s) for s in steps])
        random.seed(0), np.random.seed(0), torch.manual_seed(0)
        before = len(zero_bits)
        for _ in range(8000):
            out = pipe(dict(img_path=path, gt_label=0))
            assert out['inputs'].shape == (3, 32, 32), name
        if 'mstd0.5' in str(steps):
            assert len(zero_bits) > before, f'{name}: 8000 samples never drew a 0-bit posterize'


def test_a_failing_transform_names_itself_and_the_file(root):
    """A step that raises on one sample: one line naming the step, the file and where it raised."""
    from train_cls import TransformFailedError
    from train_cls.registry import TRANSFORMS

    @TRANSFORMS.register_module(force=True)
    class _RaisesOnce:
        def __call__(self, results):
            raise ValueError('bits must be between or equal to 1 and 8\nsecond line')

    ds = ImageNet(data_root=str(root), data_prefix=dict(img_path='train'),
                  pipeline=[dict(type='LoadImagePIL'), dict(type='_RaisesOnce')])
    with pytest.raises(TransformFailedError) as e:
        ds[0]
    msg = str(e.value)
    assert msg == (f'_RaisesOnce failed on {ds.get_data_info(0)["img_path"]}: ValueError: bits must be between '
                   'or equal to 1 and 8 (raised in test_cls_data.py:__call__)')

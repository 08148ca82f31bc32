"""The checked annotation loader (``LoadAnnotations`` of the ``backbones`` scope): mmseg's ``LoadAnnotations``
output bit for bit on every PNG kind, the label file read once, and ``CheckSegMap`` opening no file after it."""
import io
import struct
import zlib

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from backbones.datasets import transforms as seg_transforms
from backbones.datasets.checks import common as checks_common
from backbones.datasets.seg_loading import LoadAnnotationsChecked
from backbones.datasets.transforms import CheckSegMap
from backbones.utils.errors import AnnotationError
from tests.helpers import REPO


@pytest.fixture(autouse=True)
def fresh_warnings():
    checks_common._warned.clear()
    yield
    checks_common._warned.clear()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def _with_chunks(png: bytes, *chunks: bytes) -> bytes:
    """``png`` with ``chunks`` inserted right after its IHDR (before the pixels)."""
    return png[:33] + b''.join(chunks) + png[33:]


def _png(arr: np.ndarray, mode: str = None, **save) -> bytes:
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr, mode)
    if mode == 'P':
        im.putpalette(list(np.random.default_rng(1).integers(0, 256, 768)))
    buf = io.BytesIO()
    im.save(buf, 'PNG', **save)
    return buf.getvalue()


def _labels(shape=(37, 53), high=151, dtype=np.uint8):
    return np.random.default_rng(0).integers(0, high, shape).astype(dtype)


L_PNG = _png(_labels())
CASES = {
    'L': L_PNG,
    'L one row': _png(_labels((1, 53))),
    'L with text and pHYs': _with_chunks(L_PNG, _chunk(b'tEXt', b'a\x00b'), _chunk(b'pHYs', bytes(9))),
    'L with tRNS': _with_chunks(L_PNG, _chunk(b'tRNS', b'\x00\x07')),
    'L with gAMA and sBIT': _with_chunks(L_PNG, _chunk(b'gAMA', struct.pack('>I', 100000)),
                                         _chunk(b'sBIT', b'\x04')),
    'P': _png(_labels(), 'P'),
    'P with tRNS': _png(_labels(), 'P', transparency=0),
    '16-bit that fits': _png(_labels(dtype=np.uint16)),
    '16-bit with 258': _png(np.where(_labels() == 5, 258, _labels(dtype=np.uint16)).astype(np.uint16)),
    'RGB': _png(np.stack([_labels()] * 3, -1)),
}


def _both(path, **kw):
    from mmseg.datasets.transforms import LoadAnnotations
    out = []
    for cls in (LoadAnnotations, LoadAnnotationsChecked):
        results = dict(seg_map_path=path, seg_fields=[], reduce_zero_label=kw.get('reduce_zero_label', False),
                       label_map=kw.get('label_map'))
        out.append(cls(reduce_zero_label=kw.get('reduce_zero_label'))(results))
    return out


@pytest.mark.parametrize('reduce', [True, False])
@pytest.mark.parametrize('case', sorted(CASES))
def test_output_equals_mmseg_load_annotations(case, reduce, tmp_path):
    path = str(tmp_path / 'a.png')
    with open(path, 'wb') as f:
        f.write(CASES[case])
    label_map = {3: 7, 7: 3} if reduce else None
    ref, ours = _both(path, reduce_zero_label=reduce, label_map=label_map)
    a, b = ref['gt_seg_map'], ours['gt_seg_map']
    assert a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides and np.array_equal(a, b)
    for key in set(ref) | set(ours):
        if key not in ('gt_seg_map', 'seg_map_bit_depth', 'seg_map_above_255'):
            assert key in ref and key in ours and ref[key] == ours[key], key
    if a.ndim == 1:  # a 1-row file squeezes to 1-D in both; PackSegInputs refuses it in both
        return
    from mmseg.datasets.transforms import PackSegInputs
    packed = [PackSegInputs()(dict(r, img=np.zeros(a.shape[:2] + (3,), np.uint8), img_path='x.jpg',
                                   ori_shape=a.shape[:2], img_shape=a.shape[:2])) for r in (ref, ours)]
    assert packed[0]['data_samples'].metainfo == packed[1]['data_samples'].metainfo
    assert np.array_equal(packed[0]['data_samples'].gt_sem_seg.data, packed[1]['data_samples'].gt_sem_seg.data)

def test_loader_hands_on_the_bit_depth_and_big_values(tmp_path):
    for case in sorted(CASES):
        path = str(tmp_path / 'a.png')
        with open(path, 'wb') as f:
            f.write(CASES[case])
        ours = LoadAnnotationsChecked()(dict(seg_map_path=path, seg_fields=[], reduce_zero_label=False))
        depth = CASES[case][24]
        assert ours['seg_map_bit_depth'] == depth
        if depth == 16:
            raw = np.asarray(Image.open(path))
            assert ours['seg_map_above_255'].tolist() == sorted(set(raw[raw > 255].tolist()))


def test_greyscale_takes_opencv_others_pillow(tmp_path, monkeypatch):
    import mmcv
    calls = []
    decode = mmcv.imfrombytes
    monkeypatch.setattr(mmcv, 'imfrombytes', lambda *a, **k: calls.append(1) or decode(*a, **k))
    for case, pillow in (('L', False), ('L with text and pHYs', False), ('L with tRNS', True), ('P', True),
                         ('16-bit that fits', True)):
        path = str(tmp_path / 'a.png')
        with open(path, 'wb') as f:
            f.write(CASES[case])
        calls.clear()
        _both(path)
        assert len(calls) == 1 + pillow, case  # mmseg's own always decodes with mmcv


def test_check_seg_map_reads_no_file_after_the_checked_loader(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(seg_transforms, 'png_bit_depth', lambda p: opened.append(p))
    monkeypatch.setattr(seg_transforms, 'sixteen_bit_values', lambda p: opened.append(p))
    for case in ('L', '16-bit that fits'):
        path = str(tmp_path / 'a.png')
        with open(path, 'wb') as f:
            f.write(CASES[case])
        results = LoadAnnotationsChecked()(dict(seg_map_path=path, seg_fields=[], reduce_zero_label=False))
        CheckSegMap(num_classes=151)(dict(results, ori_shape=results['gt_seg_map'].shape))
    assert opened == []


def test_16bit_rule_after_the_checked_loader(tmp_path):
    path = str(tmp_path / 'a.png')
    with open(path, 'wb') as f:
        f.write(CASES['16-bit with 258'])
    results = LoadAnnotationsChecked()(dict(seg_map_path=path, seg_fields=[], reduce_zero_label=False))
    with pytest.raises(AnnotationError, match=r'a\.png: a 16-bit annotation with values above 255: 258 \(-> 2\)'):
        CheckSegMap(num_classes=151)(dict(results, ori_shape=results['gt_seg_map'].shape))


@pytest.mark.parametrize('content, why', [(None, 'annotation file not found: .*a.png$'),
                                          (b'', 'a.png: cannot load the annotation: empty file'),
                                          (L_PNG[:40], 'a.png: cannot load the annotation: not a decodable')])
def test_unreadable_file_names_it(content, why, tmp_path):
    path = str(tmp_path / 'a.png')
    if content is not None:
        with open(path, 'wb') as f:
            f.write(content)
    with pytest.raises(AnnotationError, match=why):
        LoadAnnotationsChecked()(dict(seg_map_path=path, seg_fields=[], reduce_zero_label=False))


def test_ade_configs_use_the_checked_loader():
    from mmengine.registry import TRANSFORMS, DefaultScope
    for name in ('upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py',
                 'upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py'):
        cfg = Config.fromfile(f'{REPO}/configs/{name}')
        for split in ('train_dataloader', 'val_dataloader'):
            step = next(s for s in cfg[split].dataset.pipeline if 'LoadAnnotations' in s['type'])
            with DefaultScope.overwrite_default_scope('mmseg'):
                assert type(TRANSFORMS.build(step)) is LoadAnnotationsChecked, (name, split)

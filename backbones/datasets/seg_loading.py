"""``LoadAnnotations`` of the ``backbones`` scope: mmseg's label loader that reads each file once and tells
``CheckSegMap`` the PNG's bit depth (so the check opens no file). It subclasses mmseg's, so this module imports
mmseg: the scope's registry imports it on first use (``locations`` in ``backbones/registry.py``), not
``import backbones``.
"""
import numpy as np
from mmseg.datasets.transforms import LoadAnnotations as MMSegLoadAnnotations

from backbones.datasets.checks.images import PNG_SIGNATURE, png_fast_gray
from backbones.registry import TRANSFORMS
from backbones.utils.errors import AnnotationError
from backbones.utils.io import error_line


@TRANSFORMS.register_module(name='LoadAnnotations')
class LoadAnnotationsChecked(MMSegLoadAnnotations):
    """mmseg's ``LoadAnnotations`` (same arguments, the same ``gt_seg_map`` bit for bit) that reads the label
    file once and hands ``CheckSegMap`` what it needs, so that the check opens no file:

    - the PNG bit depth from the bytes' IHDR, in ``results['seg_map_bit_depth']`` (None for other formats);
    - for a 16-bit PNG, its values above 255 (sorted, unique) in ``results['seg_map_above_255']``.

    Decoding: 8-bit greyscale PNGs without a transparency chunk (ADE20K's labels) through OpenCV's
    ``IMREAD_UNCHANGED``, which yields the same array as Pillow for them and is faster; everything else (palette,
    16-bit, other formats) as mmseg does, ``mmcv.imfrombytes(flag='unchanged')`` with ``imdecode_backend``.
    A missing, empty or undecodable file raises ``AnnotationError`` naming it. The configs write it
    ``dict(type='LoadAnnotations', _scope_='backbones')``.
    """

    def _load_seg_map(self, results: dict) -> None:
        import cv2
        import mmcv
        from mmengine import fileio
        name = results['seg_map_path']
        try:
            data = fileio.get(name, backend_args=self.backend_args)
        except FileNotFoundError:
            raise AnnotationError(f'annotation file not found: {name}') from None
        if not data:
            raise AnnotationError(f'{name}: cannot load the annotation: empty file (0 bytes)')
        depth = data[24] if data[:8] == PNG_SIGNATURE and data[12:16] == b'IHDR' and len(data) > 25 else None
        seg = why = None
        try:
            if self.imdecode_backend == 'pillow' and png_fast_gray(data):
                seg = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            else:
                seg = mmcv.imfrombytes(data, flag='unchanged', backend=self.imdecode_backend)
        except Exception as e:  # noqa: BLE001 (a decoder's failure, whatever its type)
            why = f'{type(e).__name__}: {error_line(e)}'
        if seg is None:
            raise AnnotationError(f'{name}: cannot load the annotation: not a decodable image'
                                  + (f': {why}' if why else ''))
        seg = seg.squeeze()
        results['seg_map_bit_depth'] = depth
        if depth == 16:
            results['seg_map_above_255'] = np.unique(seg[seg > 255])
        seg = seg.astype(np.uint8)
        if self.reduce_zero_label is None:
            self.reduce_zero_label = results['reduce_zero_label']
        assert self.reduce_zero_label == results['reduce_zero_label'], \
            f'Initialize dataset with `reduce_zero_label` as {results["reduce_zero_label"]} but when load ' \
            f'annotation the `reduce_zero_label` is {self.reduce_zero_label}'
        if self.reduce_zero_label:  # 0 (ignore) -> 255, 1.. -> 0..
            seg[seg == 0] = 255
            seg = seg - 1
            seg[seg == 254] = 255
        if results.get('label_map', None) is not None:
            before = seg.copy()
            for old_id, new_id in results['label_map'].items():
                seg[before == old_id] = new_id
        results['gt_seg_map'] = seg
        results['seg_fields'].append('gt_seg_map')

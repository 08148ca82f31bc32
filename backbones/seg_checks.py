"""A pipeline step that rejects bad segmentation annotations with an error naming the file.

Without it, an annotation PNG whose size differs from its image fails later inside a crop or a loss,
and a label outside the class range either crashes the cross-entropy (index out of range) or is silently
counted as a class by the metric. Registered in MMEngine's root TRANSFORMS, so mmseg pipelines find it:

    dict(type='LoadAnnotations'), dict(type='CheckSegMap', num_classes=150),
"""
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS

from .errors import AnnotationError


@TRANSFORMS.register_module()
class CheckSegMap(BaseTransform):
    """Checks ``gt_seg_map`` (after LoadAnnotations / reduce_zero_label) against the image and classes.

    Args:
        num_classes: labels must be in ``[0, num_classes)`` or equal ``ignore_index``.
        ignore_index: the label that losses and metrics skip (255 in mmseg).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        if 'gt_seg_map' not in results:  # inference pipelines (mmseg.apis) load no annotation
            return results
        seg = results['gt_seg_map']
        h, w = results.get('ori_shape') or results['img'].shape[:2]  # test pipelines resize before loading
        name = results.get('seg_map_path', '?')
        if seg.shape[:2] != (h, w):
            raise AnnotationError(f'{name}: annotation size {seg.shape[1]}x{seg.shape[0]} (WxH) differs from '
                                  f'its image {results.get("img_path", "?")} {w}x{h}')
        values = np.unique(seg)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size:
            raise AnnotationError(f'{name}: label values {bad.tolist()} outside the {self.num_classes} classes '
                                  f'(valid: 0..{self.num_classes - 1}, ignore {self.ignore_index}; labels are '
                                  'counted after reduce_zero_label)')
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})'

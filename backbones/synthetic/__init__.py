"""Small generated datasets in the real on-disk layouts (ADE20K, COCO instances, ImageNet folders), for the
main job, the tests and quick trials: drawn shapes whose true labels, boxes and masks are known exactly.
``tools/synthetic_data.py {ade,coco,imagenet} ROOT`` writes them from the command line."""
from .ade import SHAPES, write_ade
from .coco import write_coco
from .imagenet import CLASSES, wnid, write_imagenet

__all__ = ['SHAPES', 'CLASSES', 'wnid', 'write_ade', 'write_coco', 'write_imagenet']

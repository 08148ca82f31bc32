"""Small generated datasets in the real on-disk layouts (ADE20K, COCO instances, ImageNet folders), for the
main job, the tests and quick trials: drawn shapes whose true labels, boxes and masks are known exactly.
``tools/misc/synthetic_data.py {ade,coco,imagenet} ROOT`` writes them from the command line."""
from backbones.datasets.synthetic.ade import SHAPES, write_ade
from backbones.datasets.synthetic.coco import write_coco
from backbones.datasets.synthetic.imagenet import CLASSES, wnid, write_imagenet

__all__ = ['SHAPES', 'CLASSES', 'wnid', 'write_ade', 'write_coco', 'write_imagenet']

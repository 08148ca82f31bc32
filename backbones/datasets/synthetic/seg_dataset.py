"""``SyntheticADEDataset``: the generated ADE20K-layout set (``write_ade``) as an mmseg data set that carries its
class names and palette (``METAINFO``), as ``ADE20KDataset`` does for ADE's 150: tools that read them off the class
(mmseg's ``misc/browse_dataset.py``, our ``analysis_tools/confusion_matrix.py``) work on it. Registered in the
``backbones`` scope (configs: ``type='backbones.SyntheticADEDataset'``); imports mmseg, so the registry imports
this module on first use only."""
from mmseg.datasets import BaseSegDataset

from backbones.datasets.synthetic.ade import SHAPE_PALETTE, SHAPES
from backbones.registry import DATASETS


@DATASETS.register_module()
class SyntheticADEDataset(BaseSegDataset):
    """``images/{training,validation}/*.jpg`` + ``annotations/.../*.png`` (``reduce_zero_label``: PNG 0 is the
    ignored border band, 1 the background, 2.. the shapes). ``METAINFO``: the classes of ``write_ade``'s default
    5 shapes; a set written with other ``num_classes`` gives its classes through the config's ``metainfo``."""

    METAINFO = dict(classes=('background',) + SHAPES[:5], palette=[[120, 120, 120]] + SHAPE_PALETTE[:5])

    def __init__(self, img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True, **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)

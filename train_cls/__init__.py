"""Classification pretraining: ImageNet on MMEngine's Runner, with timm's augmentation, mixup and losses.

Everything is registered in the ``train_cls`` scope (``train_cls.registry``): the ``ImageNet`` dataset
(class folders or a file list), the ``LoadImagePIL`` / ``TimmTransform`` / ``PackClsInputs`` transforms,
``ClsDataPreprocessor`` (normalise, random erasing, mixup/cutmix), ``InceptionNeXtClassifier``, the
``Accuracy`` metric. The runner is ``backbones.engine.runner.RobustRunner``, as for every task. Configs:
``configs/inceptionnext-{atto,t,s,b}_*_in1k.py`` and ``configs/inceptionnext-b_8xb32-30e_in1k-384px.py``.
"""
from . import registry  # noqa: F401  (first: the other modules register into it)
from .datasets import DatasetError, ImageNet, TransformFailedError, UnreadableImageError, UnreadableImageWarning
from .metrics import Accuracy
from .model import ClsDataPreprocessor, InceptionNeXtClassifier, load_classifier_weights
from .transforms import LoadImagePIL, PackClsInputs, TimmTransform

__all__ = ['ImageNet', 'DatasetError', 'TransformFailedError', 'UnreadableImageError', 'UnreadableImageWarning',
           'Accuracy', 'ClsDataPreprocessor', 'InceptionNeXtClassifier', 'load_classifier_weights',
           'LoadImagePIL', 'PackClsInputs', 'TimmTransform']

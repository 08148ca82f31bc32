"""InceptionNeXt for MMEngine / mmdet / mmseg.

Importing this package registers ``InceptionNeXt`` in MMEngine's root ``MODELS`` registry, which every
child registry (mmdet's, mmseg's, train_cls's) falls back to, so configs of all three tasks use
``type='InceptionNeXt'`` after ``custom_imports=dict(imports=['backbones'])``.
"""
from . import engine, optim, seg_checks  # noqa: F401  (registers hooks, the layer-decay constructor, CheckSegMap)
from .inceptionnext import (InceptionDWConv2d, InceptionNeXt, MetaNeXtBlock, MlpHead, PartialDWConv2d,
                            TOKEN_MIXERS)
from .errors import AnnotationError, CheckpointError, DatasetError, UserInputError
from .weights import (classifier_state_dict, convert_timm_state_dict, extract_backbone,
                      load_backbone_weights, read_checkpoint)

__all__ = ['InceptionNeXt', 'InceptionDWConv2d', 'PartialDWConv2d', 'MetaNeXtBlock', 'MlpHead', 'TOKEN_MIXERS',
           'UserInputError', 'CheckpointError', 'DatasetError', 'AnnotationError', 'classifier_state_dict', 'convert_timm_state_dict', 'extract_backbone',
           'load_backbone_weights', 'read_checkpoint']

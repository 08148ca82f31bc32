"""InceptionNeXt for MMEngine / mmdet / mmseg.

Importing this package only registers things in MMEngine's root registries, which every child registry
(mmdet's, mmseg's, train_cls's) falls back to: the ``InceptionNeXt`` backbone (MODELS), the hooks
(``RNGStateHook``, ``ProgressBarHook``), the ``CheckSegMap`` transform, the layer-decay optimizer constructor
and ``RobustRunner``. So configs of all three tasks write ``type='InceptionNeXt'`` after
``custom_imports=dict(imports=['backbones'])``. Nothing in MMEngine is changed by the import: the fixes
around MMEngine (``backbones.runtime``) are installed when a ``RobustRunner`` is built.

Where things are: the model (``inceptionnext.py``), device-specific kernels (``ops/``), weights
(``weights.py``), errors (``errors.py``), MMEngine fixes (``runtime.py``), hooks (``hooks.py``), run checks
(``checks.py``, ``seg_checks.py``, ``coco_checks.py``), config -> model (``build.py``), the tools' shared
command-line code (``cli.py``), measurement (``analysis/``), generated datasets (``synthetic/``).
"""
from . import hooks, optim, runtime, seg_checks  # noqa: F401  (registration only)
from .errors import AnnotationError, CheckpointError, DatasetError, UserInputError
from .inceptionnext import (InceptionDWConv2d, InceptionNeXt, MetaNeXtBlock, MlpHead, PartialDWConv2d,
                            TOKEN_MIXERS)
from .weights import (classifier_state_dict, convert_timm_state_dict, extract_backbone,
                      load_backbone_weights, read_checkpoint)

__all__ = ['InceptionNeXt', 'InceptionDWConv2d', 'PartialDWConv2d', 'MetaNeXtBlock', 'MlpHead', 'TOKEN_MIXERS',
           'UserInputError', 'CheckpointError', 'DatasetError', 'AnnotationError', 'classifier_state_dict',
           'convert_timm_state_dict', 'extract_backbone', 'load_backbone_weights', 'read_checkpoint']

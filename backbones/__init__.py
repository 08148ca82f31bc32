"""InceptionNeXt for MMEngine / mmdet / mmseg.

Importing this package only registers things in MMEngine's root registries, which every child registry
(mmdet's, mmseg's, train_cls's) falls back to: the ``InceptionNeXt`` backbone (MODELS), the hooks, the checked
pipeline steps, the layer-decay optimizer constructor and ``RobustRunner``. So configs of all three tasks write
``type='InceptionNeXt'`` after ``custom_imports=dict(imports=['backbones'])``. Nothing in MMEngine is changed by
the import: the fixes around MMEngine (``backbones.engine.mmengine_fixes``) are installed when a run with
``MMEngineFixesHook`` starts (every config lists it; ``RobustRunner`` adds it).

The package, by layer (each imports only from the layers below it):

- ``apis/``, ``analysis/``, ``deploy/``: a model from a config, a train / test run's config and pre-flight,
  inference on one image; FLOPs, throughput, curves, the GPU bench; ONNX export.
- ``engine/``, ``datasets/``: the Runner, the MMEngine fixes, hooks, optimizer constructors, run checks;
  pipeline steps, the data checks (image files, segmentation, COCO), generated data sets.
- ``models/``: the model (``inceptionnext.py``), checkpoint layouts and conversion (``weights.py``), device
  kernels (``ops/``).
- ``utils/``: errors, config reading, the command-line error path, file writing.
"""
from backbones.datasets import transforms  # noqa: F401  (registration only)
from backbones.engine import hooks, optimizers, runner  # noqa: F401  (registration only)
from backbones.models.inceptionnext import (
                                            TOKEN_MIXERS,
                                            InceptionDWConv2d,
                                            InceptionNeXt,
                                            MetaNeXtBlock,
                                            MlpHead,
                                            PartialDWConv2d,
                                            load_backbone_weights,
)
from backbones.models.weights import (
                                            classifier_state_dict,
                                            convert_timm_state_dict,
                                            extract_backbone,
                                            read_checkpoint,
)
from backbones.utils.errors import AnnotationError, CheckpointError, DatasetError, UserInputError
from backbones.version import __version__

__all__ = ['__version__', 'InceptionNeXt', 'InceptionDWConv2d', 'PartialDWConv2d', 'MetaNeXtBlock', 'MlpHead',
           'TOKEN_MIXERS', 'UserInputError', 'CheckpointError', 'DatasetError', 'AnnotationError',
           'classifier_state_dict', 'convert_timm_state_dict', 'extract_backbone', 'load_backbone_weights',
           'read_checkpoint']

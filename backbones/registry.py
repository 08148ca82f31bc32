"""The registries of this package's own scope, ``backbones`` (children of MMEngine's root registries). MMEngine
imports this module when a config entry says ``_scope_='backbones'`` or a type starts with ``backbones.``:
``dict(type='LoadImageFromFile', _scope_='backbones')`` (the checked loader under the name mmseg's and mmdet's
inferencers look for), ``type='backbones.SyntheticADEDataset'``. Everything else of the package (the backbone,
hooks, the optimizer constructor, the runner) is in MMEngine's root registries.

The entries are imported on first use (``locations``): they import mmseg / mmdet, which ``import backbones``
does not. This module imports only MMEngine, so every layer of the package may import it.
"""
from mmengine.registry import DATASETS as ROOT_DATASETS
from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS
from mmengine.registry import VISUALIZERS as ROOT_VISUALIZERS
from mmengine.registry import Registry

SCOPE = 'backbones'
TRANSFORMS = Registry('transform', parent=ROOT_TRANSFORMS, scope=SCOPE,
                      locations=['backbones.datasets.transforms', 'backbones.datasets.seg_loading'])
DATASETS = Registry('dataset', parent=ROOT_DATASETS, scope=SCOPE,
                    locations=['backbones.datasets.synthetic.seg_dataset'])
VISUALIZERS = Registry('visualizer', parent=ROOT_VISUALIZERS, scope=SCOPE,
                       locations=['backbones.engine.visualization'])

__all__ = ['SCOPE', 'TRANSFORMS', 'DATASETS', 'VISUALIZERS']

"""The registries of this package's own scope, ``backbones`` (children of MMEngine's root registries;
``backbones/registry.py`` re-exports them, where MMEngine looks for a scope's registries).

A config names an entry of this scope with ``_scope_='backbones'`` in the entry or a ``backbones.`` prefix on
its type: ``dict(type='LoadImageFromFile', _scope_='backbones')`` (the checked loader under the name mmseg's and
mmdet's inferencers look for), ``type='backbones.SyntheticADEDataset'``. The data set classes are imported on
first use (``locations``): they import mmseg / mmdet, which ``import backbones`` does not.
"""
from mmengine.registry import DATASETS as ROOT_DATASETS
from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS
from mmengine.registry import Registry

SCOPE = 'backbones'
TRANSFORMS = Registry('transform', parent=ROOT_TRANSFORMS, scope=SCOPE,
                      locations=['backbones.datasets.transforms'])
DATASETS = Registry('dataset', parent=ROOT_DATASETS, scope=SCOPE,
                    locations=['backbones.datasets.synthetic.seg_dataset'])

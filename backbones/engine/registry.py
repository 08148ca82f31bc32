"""The ``backbones`` scope's visualizer registry (a child of MMEngine's root ``VISUALIZERS``; re-exported by
``backbones/registry.py``, where MMEngine looks for a scope's registries). Its entries import mmseg, so they are
imported on first use (``locations``), not by ``import backbones``."""
from mmengine.registry import VISUALIZERS as ROOT_VISUALIZERS
from mmengine.registry import Registry

VISUALIZERS = Registry('visualizer', parent=ROOT_VISUALIZERS, scope='backbones',
                       locations=['backbones.engine.visualization'])

"""This package's registry scope, ``backbones``: where MMEngine looks (``import backbones.registry``) when a
config entry says ``_scope_='backbones'`` or a type starts with ``backbones.``. The registries are defined in
``backbones/datasets/registry.py`` (data sets, pipeline steps) and ``backbones/engine/registry.py`` (visualizers);
everything else of the package is in MMEngine's root registries."""
from backbones.datasets.registry import DATASETS, SCOPE, TRANSFORMS
from backbones.engine.registry import VISUALIZERS

__all__ = ['SCOPE', 'TRANSFORMS', 'DATASETS', 'VISUALIZERS']

"""ONNX export of our classifiers, backbones and mmseg segmentors, and its check in ONNX Runtime: the names the
tools and the tests use, re-exported from ``export.py`` (what exports as which tensor-only module, building from
a config, the export), ``shims.py`` (the modules swapped in so that a dynamic export holds at every size) and
``runtime.py`` (ONNX Runtime sessions, the check, ``OrtModule``).
"""
from backbones.deploy.export import (
    DET_UNSUPPORTED,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_SIZE,
    OPSET,
    BackboneForward,
    ClassifierForward,
    Exportable,
    ExportError,
    SegmentorForward,
    build_exportable,
    export,
    export_exportable,
    save_atomically,
    test_resize_of,
)
from backbones.deploy.runtime import ExportCheckError, OrtModule, check, ort_run, ort_session, other_sizes
from backbones.deploy.shims import (
    ExportableAdaptiveAvgPool2d,
    ExportableUpsample,
    adaptive_bins,
    adaptive_mean,
    prepare_for_export,
    replace_adaptive_pools,
    replace_upsamples,
)
from backbones.utils.errors import CheckpointError, UserInputError

__all__ = ['DET_UNSUPPORTED', 'IMAGENET_MEAN', 'IMAGENET_STD', 'MIN_SIZE', 'OPSET', 'BackboneForward',
           'CheckpointError', 'ClassifierForward', 'ExportCheckError', 'ExportError', 'Exportable',
           'ExportableAdaptiveAvgPool2d', 'ExportableUpsample', 'OrtModule', 'SegmentorForward', 'UserInputError',
           'adaptive_bins', 'adaptive_mean', 'build_exportable', 'check', 'export', 'export_exportable',
           'ort_run', 'ort_session', 'other_sizes', 'prepare_for_export', 'replace_adaptive_pools',
           'replace_upsamples', 'save_atomically', 'test_resize_of']

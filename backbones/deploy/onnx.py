"""ONNX export (torch's ``torch.export``-based exporter) of our classifiers, backbones and mmseg segmentors.

What exports, as tensor-only modules (input: a normalised RGB batch (N, 3, H, W), float32):
  classifier (``train_cls`` configs)  -> ``logits`` (N, num_classes), or ``label`` (N,) with ``argmax``
  backbone (``backbone:<arch>``, or a config's backbone)  -> ``stage<i>`` (N, dims[i], H / 2**(i+2), ...)
  segmentor (mmseg ``EncoderDecoder``: UperNet, Semantic FPN)  -> ``logits`` (N, num_classes, H, W) at the
      input size, or ``label`` (N, H, W) with ``argmax``: mmseg's whole-image inference (``encode_decode``
      then the resize to the image size). Slide inference is a loop over crops around the graph, not in it.
mmdet detectors are refused (``UserInputError``): see ``DET_UNSUPPORTED``.

Dynamic export (batch, height and width symbolic) works for any H, W >= 32 (the backbone's stride), not
only multiples of 32. mmseg's PPM (UperNet) pools with ``nn.AdaptiveAvgPool2d((1, 2, 3, 6))``, which
exports with the bins of the traced size (wrong, or an ONNX Runtime error, at other sizes);
``prepare_for_export`` swaps those modules (in the model being exported only) for
``ExportableAdaptiveAvgPool2d``: the same bins, averaged from cumulative sums at indices computed from the
runtime size. Semantic FPN's scale-factor ``Upsample`` gets the same treatment (``ExportableUpsample``).

The code lives in ``export.py`` (tensor-only wrappers, building from a config, the export), ``shims.py``
(the modules swapped in for a dynamic export) and ``runtime.py`` (ONNX Runtime: sessions, the check,
``OrtModule``); this module re-exports their public names.
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

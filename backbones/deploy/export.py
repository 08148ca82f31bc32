"""ONNX export (torch's ``torch.export``-based exporter) of our classifiers, backbones and mmseg segmentors.

What exports, as tensor-only modules (input: a normalised RGB batch (N, 3, H, W), float32):
  classifier (``train_cls`` configs)  -> ``logits`` (N, num_classes), or ``label`` (N,) with ``argmax``
  backbone (``backbone:<arch>``, or a config's backbone)  -> ``stage<i>`` (N, dims[i], H / 2**(i+2), ...)
  segmentor (mmseg ``EncoderDecoder``: UperNet, Semantic FPN)  -> ``logits`` (N, num_classes, H, W) at the
      input size, or ``label`` (N, H, W) with ``argmax``: mmseg's whole-image inference (``encode_decode``
      then the resize to the image size). Slide inference is a loop over crops around the graph, not in it.
mmdet detectors are refused (``UserInputError``): see ``DET_UNSUPPORTED``.

``shims.py`` makes the dynamic export hold at every size; ``runtime.py`` checks the file in ONNX Runtime.
"""
import copy
import json
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from backbones.deploy.shims import prepare_for_export
from backbones.utils.config import load_config
from backbones.utils.errors import CheckpointError, UserInputError
from backbones.utils.io import atomic_write_path, error_line

OPSET = 18
MIN_SIZE = 32  # the backbone's total stride: smaller inputs leave no stage-3 map
DET_UNSUPPORTED = (
    'detection export is not supported: mmdet\'s detectors end in data-dependent post-processing '
    '(per-image NMS with a variable number of boxes, mmcv\'s compiled RoIAlign / NMS ops, Python loops over '
    'data samples) that torch.export cannot put into a standard ONNX graph without mmdeploy\'s rewrites; '
    'export the backbone with --backbone instead')


class ExportError(UserInputError):
    """torch.export cannot capture the model (e.g. code that pins a dynamic size)."""


# --------------------------------------------------------------------------------------------------
# Tensor-only modules
# --------------------------------------------------------------------------------------------------
class ClassifierForward(nn.Module):
    """(N, 3, H, W) -> logits (N, num_classes), or the class index (N,) (int64) with ``argmax``."""

    def __init__(self, model: nn.Module, argmax: bool = False):
        super().__init__()
        self.backbone, self.head, self.argmax = model.backbone, model.head, argmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(x)[-1])
        return logits.argmax(1) if self.argmax else logits


class BackboneForward(nn.Module):
    """(N, 3, H, W) -> the tuple of stage maps (N, dims[i], H / 2**(i+2), W / 2**(i+2)), i in out_indices."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.backbone(x))


class SegmentorForward(nn.Module):
    """mmseg ``EncoderDecoder`` whole-image inference on a tensor: (N, 3, H, W) -> logits (N, K, H, W), or the
    label map (N, H, W) (int64) with ``argmax`` (threshold on the sigmoid for a one-channel head, as mmseg).

    ``extract_feat`` (backbone + neck), ``decode_head.forward``, bilinear resize to the input size: what
    ``encode_decode`` + ``postprocess_result`` do for an unpadded image (no auxiliary head at inference).
    """

    def __init__(self, segmentor: nn.Module, argmax: bool = False):
        super().__init__()
        self.segmentor, self.argmax = segmentor, argmax
        head = segmentor.decode_head
        self.align_corners, self.threshold = head.align_corners, getattr(head, 'threshold', 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.segmentor.decode_head.forward(self.segmentor.extract_feat(x))
        logits = F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=self.align_corners)
        if not self.argmax:
            return logits
        if logits.shape[1] == 1:
            return (logits.sigmoid() > self.threshold).to(torch.int64)[:, 0]
        return logits.argmax(1)


class Exportable:
    """What ``build_exportable`` returns: the module to export, the reference it must equal (the model as
    configured and loaded: no swapped modules, not folded, logits), its kind, output names and the
    preprocessing the input needs (written into the ONNX file's metadata)."""

    def __init__(self, module: nn.Module, reference: nn.Module, kind: str, output_names: List[str],
                 mean: Sequence[float], std: Sequence[float], rgb: bool, default_shape: Tuple[int, int],
                 source: str):
        self.module, self.reference, self.kind, self.output_names = module, reference, kind, output_names
        self.mean, self.std, self.rgb = [float(v) for v in mean], [float(v) for v in std], rgb
        self.default_shape, self.source = default_shape, source

    @property
    def argmax(self) -> bool:
        return bool(getattr(self.module, 'argmax', False))

    test_resize: Optional[dict] = None  # a segmentor config's test-time Resize (``test_resize_of``)

    def metadata(self) -> Dict[str, str]:
        """ONNX metadata: enough to preprocess an image without the config (see docs/export.md): the input is
        (image[channel_order] - mean) / std, on 0..255 values; for a segmentor, ``test_resize`` (JSON) is the
        config's test-time resize of the image before that, and how the logits go back to the image's size
        (docs/ecosystem.md has the snippet that applies both)."""
        meta = {'inceptionnext.kind': self.kind, 'inceptionnext.source': self.source,
                'mean': ','.join(map(str, self.mean)), 'std': ','.join(map(str, self.std)),
                'channel_order': 'RGB' if self.rgb else 'BGR', 'pixel_range': '0-255',
                'output': 'label' if self.argmax else ','.join(self.output_names)}
        if self.kind == 'segmentor':
            meta['test_resize'] = json.dumps(self.test_resize)
        return meta


def test_resize_of(cfg, align_corners: bool = False) -> Optional[dict]:
    """The test pipeline's image resize (mmcv's ``Resize`` in mmseg's test pipeline), as plain data:
    ``scale`` (w, h) or ``scale_factor``, ``keep_ratio``, ``interpolation``; and ``align_corners`` of the
    bilinear resize that takes the logits back to the original size (mmseg's ``postprocess_result``).
    None when the pipeline does not resize."""
    pipeline = (cfg.get('test_dataloader') or {}).get('dataset', {}).get('pipeline') or cfg.get('test_pipeline')
    for t in pipeline or []:
        if isinstance(t, dict) and str(t.get('type', '')).split('.')[-1] == 'Resize':
            scale, factor = t.get('scale'), t.get('scale_factor')
            out = dict(scale=[int(v) for v in (scale if isinstance(scale, (list, tuple)) else (scale, scale))]
                       if scale is not None else None,
                       scale_factor=float(factor) if isinstance(factor, (int, float)) else
                       ([float(v) for v in factor] if factor is not None else None),
                       keep_ratio=bool(t.get('keep_ratio', False)),
                       interpolation=t.get('interpolation', 'bilinear'), align_corners=bool(align_corners))
            return out
    return None


# --------------------------------------------------------------------------------------------------
# Building from a config
# --------------------------------------------------------------------------------------------------
IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def _build(cfg, model_cfg) -> nn.Module:
    """``model_cfg`` built in the registry scope of ``cfg`` (its ``default_scope`` and ``custom_imports``)."""
    from backbones.apis.build import build_in_scope
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # mmseg's loss builders warn about training options
        return build_in_scope(cfg, model_cfg)


def _read_weights(path: str) -> dict:
    """The file's state dict (an MMEngine training checkpoint, a state dict; read safely)."""
    from backbones.models.weights import read_checkpoint, unwrap_state_dict
    return unwrap_state_dict(read_checkpoint(path))


def _load_strict(model: nn.Module, sd: dict, what: str) -> None:
    from backbones.models.weights import load_strict
    problems = load_strict(model, sd, n=4)
    if problems:
        hint = ('' if any(k.startswith('decode_head.') for k in sd) else
                ' (no decode_head weights: a backbone or classifier file? export it with --backbone)')
        raise CheckpointError(f'checkpoint does not fit {what}{hint}: {problems}')


def build_exportable(config: str, checkpoint: Optional[str] = None, *, backbone: bool = False,
                     deploy: bool = False, argmax: bool = False, cfg_options: Optional[dict] = None,
                     prepare: bool = True, seed: int = 0) -> Exportable:
    """The tensor-only module to export, from a config (or ``backbone:<arch>``) and an optional checkpoint.

    ``backbone``: only the config's backbone. ``deploy``: InceptionNeXt folded (``switch_to_deploy``).
    ``argmax``: class indices / label map instead of logits (classifiers and segmentors).
    ``prepare=False`` leaves the model as built (no pool swap, no deploy): the export controls of the tests.
    Weights the checkpoint does not set are the random init under ``seed`` (the same model every time).
    Both forms share nothing: ``.reference`` is a copy of the model before the swaps and the folding.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build_exportable(config, checkpoint, backbone, deploy, argmax, cfg_options, prepare)


def _build_exportable(config, checkpoint, backbone, deploy, argmax, cfg_options, prepare) -> Exportable:
    from backbones.models.inceptionnext import InceptionNeXt
    if config.startswith('backbone:'):
        arch = config[len('backbone:'):]
        try:
            net = InceptionNeXt(arch, out_indices=(0, 1, 2, 3))
        except ValueError as e:
            raise UserInputError(str(e)) from None
        mean, std, rgb, shape = IMAGENET_MEAN, IMAGENET_STD, True, (224, 224)
        kind, backbone, source = 'backbone', True, config
    else:
        cfg = load_config(config, cfg_options)
        scope = cfg.get('default_scope')
        source = osp.basename(config)
        if scope == 'mmdet' and not backbone:
            raise UserInputError(f'{source}: {DET_UNSUPPORTED}')
        if scope not in ('train_cls', 'mmseg', 'mmdet'):
            raise UserInputError(f'{source}: default_scope {scope!r} is not a classification (train_cls) or '
                                 'segmentation (mmseg) config')
        if backbone:
            cfg.model.backbone.pop('init_cfg', None)
            net, kind = _build(cfg, cfg.model.backbone), 'backbone'
        else:
            net = _build(cfg, cfg.model)
            kind = 'classifier' if scope == 'train_cls' else 'segmentor'
        pre = cfg.model.get('data_preprocessor') or {}
        mean, std = pre.get('mean', IMAGENET_MEAN), pre.get('std', IMAGENET_STD)
        # train_cls reads RGB (PIL); mmseg / mmdet read BGR (cv2) and flip the channels when told to
        rgb = scope == 'train_cls' or bool(pre.get('bgr_to_rgb') or pre.get('rgb_to_bgr'))
        size = pre.get('size') if kind == 'segmentor' else None
        shape = tuple(size) if size else (224, 224)
    if backbone and not isinstance(net, InceptionNeXt):
        raise UserInputError(f'{source}: the backbone is {type(net).__name__}, not InceptionNeXt')
    if argmax and kind == 'backbone':
        raise UserInputError('--argmax needs a classifier or a segmentor, not a bare backbone')
    if checkpoint:
        from backbones.models.inceptionnext import load_backbone_weights, load_classifier_weights
        sd = _read_weights(checkpoint)
        if kind == 'backbone':
            load_backbone_weights(net, sd)
        elif kind == 'classifier':
            load_classifier_weights(net, sd)
        else:
            _load_strict(net, sd, f'{source} ({type(net).__name__}, {type(net.decode_head).__name__})')
    if kind == 'segmentor' and (not hasattr(net, 'extract_feat') or not isinstance(net.decode_head, nn.Module)
                                or isinstance(net.decode_head, nn.ModuleList)):
        raise UserInputError(f'{source}: {type(net).__name__} is not a single-head EncoderDecoder')
    from mmengine.model import revert_sync_batchnorm
    net = revert_sync_batchnorm(net).eval()
    ref = copy.deepcopy(net) if prepare else net  # the model as configured: what --check compares with
    if prepare:
        net = prepare_for_export(net, deploy)
    if kind == 'classifier':
        module, names, reference = ClassifierForward(net, argmax), ['logits'], ClassifierForward(ref)
    elif kind == 'segmentor':
        module, names, reference = SegmentorForward(net, argmax), ['logits'], SegmentorForward(ref)
    else:
        module, names = BackboneForward(net), [f'stage{i}' for i in net.out_indices]
        reference = BackboneForward(ref)
    names = ['label'] if argmax else names
    exportable = Exportable(module.eval(), reference.eval(), kind, names, mean, std, rgb, shape, source)
    if kind == 'segmentor':
        exportable.test_resize = test_resize_of(cfg, net.decode_head.align_corners)
    return exportable


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------
def export(module: nn.Module, path: str, shape: Tuple[int, int] = (224, 224), batch: int = 1,
           dynamic: bool = False, opset: int = OPSET, output_names: Optional[List[str]] = None,
           metadata: Optional[Dict[str, str]] = None, verbose: bool = False) -> str:
    """Exports ``module`` ((N, 3, H, W) -> tensor(s)) with ``torch.onnx.export(dynamo=True)`` to one file.

    Static: the input is (batch, 3, *shape). ``dynamic``: batch, height and width are symbolic (H, W >= 32;
    traced at batch max(batch, 2), as a size-1 example would be taken for a constant).
    """
    import logging
    if opset < 18:
        raise UserInputError(f'opset {opset}: the torch.export-based exporter needs opset >= 18')
    h, w = shape
    if min(h, w) < MIN_SIZE:
        raise UserInputError(f'--shape {h} {w}: H and W must be at least {MIN_SIZE} (the backbone\'s stride)')
    x = torch.randn(max(batch, 2) if dynamic else batch, 3, h, w)
    dynamic_shapes = None
    if dynamic:
        from torch.export import Dim
        dynamic_shapes = ({0: Dim('batch', min=1), 2: Dim('height', min=MIN_SIZE),
                           3: Dim('width', min=MIN_SIZE)},)
    if not verbose:  # the exporter logs each step at INFO and warns about every Dim it refines
        logging.getLogger('torch.onnx').setLevel(logging.ERROR)
        logging.getLogger('torch.export').setLevel(logging.ERROR)
    with torch.no_grad():
        # torch.export first, on our own: torch.onnx.export would retry a failed dynamic capture with the
        # "suggested fixes" applied, which can pin a size inside the graph while the file's input stays
        # dynamic (a file that is silently wrong at other sizes). Here a size the model pins is an error.
        # backed_size_oblivious (as torch.onnx's own first try): a stage map of size 1 (H or W in 32..63) is
        # not a special case of the graph; torch's layout checks (is a size-1 dim contiguous?) would pin it.
        try:
            with torch.fx.experimental._config.patch(backed_size_oblivious=True):
                program = torch.export.export(module.eval(), (x,), dynamic_shapes=dynamic_shapes,
                                              strict=False)
        except Exception as e:  # noqa: BLE001 -- torch.export raises many types
            sizes = ' with dynamic sizes' if dynamic else ''
            raise ExportError(f'torch.export cannot capture the model{sizes}: '
                              f'{error_line(e, first=3, limit=600)}') from e
        names = ({0: 'batch', 2: 'height', 3: 'width'},) if dynamic else None  # the file's dim names
        onnx_program = torch.onnx.export(program, (x,), dynamo=True, opset_version=opset,
                                         input_names=['input'], output_names=output_names,
                                         dynamic_shapes=names, external_data=False, verbose=verbose)
    if metadata:
        onnx_program.model.metadata_props.update(metadata)
    # the smallest H and W the file takes: ONNX Runtime's own error below it names no size
    onnx_program.model.metadata_props['min_size'] = str(MIN_SIZE if dynamic else min(h, w))
    save_atomically(onnx_program, path)
    return path


def save_atomically(onnx_program, path: str) -> None:
    """Writes the ONNX file through a temporary file in the same folder (``utils.io.atomic_write_path``): an
    interrupted or failed write leaves the earlier file (or none), never a partial one."""
    atomic_write_path(path, lambda tmp: onnx_program.save(tmp, external_data=False))


def export_exportable(exportable: Exportable, path: str, **kw) -> str:
    """``export`` with the exportable's output names and metadata."""
    return export(exportable.module, path, output_names=exportable.output_names,
                  metadata=exportable.metadata(), **kw)

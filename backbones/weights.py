"""Reading, converting and strictly loading InceptionNeXt weights.

Key layouts understood (after unwrapping ``state_dict`` / ``model`` / ``module.`` wrappers):
  official release / timm   ``stem.{0,1}.*``, ``stages.N.downsample.{0,1}.*``, ``stages.N.blocks.M.*``,
                            ``head.{fc1,norm,fc2}.*``
  ours, backbone            ``stem.{conv,norm}.*``, ``stages.N.downsample.{norm,conv}.*``, ``stages.N.blocks.M.*``
  ours, classifier          ``backbone.<ours, backbone>`` + ``head.{fc1,norm,fc2}.*`` (train_cls, converter output)
  mmdet / mmseg models      ``backbone.<ours, backbone>`` + their necks and heads
Block parameters (``token_mixer.dwconv_{hw,w,h}``, ``norm``, ``mlp.fc{1,2}``, ``gamma``) keep their names.
"""
import os
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .errors import CheckpointError
from .utils import atomic_save, names

StateDict = Dict[str, torch.Tensor]


_TIMM_RULES = [  # (pattern, replacement) on official/timm keys, applied in order; first match wins
    (r'^stem\.0\.', 'backbone.stem.conv.'),
    (r'^stem\.1\.', 'backbone.stem.norm.'),
    (r'^stages\.(\d+)\.downsample\.0\.', r'backbone.stages.\1.downsample.norm.'),
    (r'^stages\.(\d+)\.downsample\.1\.', r'backbone.stages.\1.downsample.conv.'),
    (r'^stages\.(\d+)\.blocks\.', r'backbone.stages.\1.blocks.'),
    (r'^head\.(fc1|norm|fc2)\.', r'head.\1.'),
]


def read_checkpoint(path: str, trusted: bool = False) -> dict:
    """torch.load with errors that say what is wrong with the file.

    ``weights_only=True`` (torch's safe unpickler) unless ``trusted``: the tools pass ``trusted`` only
    for a run's own training checkpoints, which also pickle MMEngine's logging state.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=not trusted)
    except Exception as e:  # noqa: BLE001 -- torch raises several types for bad files
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        if os.path.getsize(path) == 0:
            raise CheckpointError(f'cannot read checkpoint {path}: the file is empty (0 bytes)') from None
        if 'Weights only load failed' in str(e):
            raise CheckpointError(
                f'{path} holds more than tensors (an MMEngine training checkpoint?); extract its backbone with '
                f'`python tools/extract_backbone.py {path} OUT.pth [--ema]` first ({msg})') from None
        raise CheckpointError(f'cannot read checkpoint {path}: truncated or corrupt file? ({msg})') from None


def unwrap_state_dict(obj) -> StateDict:
    """Strips the ``state_dict`` / ``model`` container keys and a DataParallel ``module.`` prefix."""
    return select_state_dict(obj)[0]


def select_state_dict(obj):
    """``(state dict, entry, other entries)``: the weights ``unwrap_state_dict`` takes, the container key
    they came from (``'state_dict'``, ``'model'``, or ``''`` for a bare state dict) and the names of the
    other state dicts in the file that are not used (an EMA copy, say)."""
    entry, others = '', []
    for key in ('state_dict', 'model'):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            others += [k for k, v in obj.items() if k != key and isinstance(v, dict) and v
                       and all(isinstance(t, torch.Tensor) for t in v.values())]
            entry, obj = (f'{entry}.{key}' if entry else key), obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError('checkpoint holds no state dict of tensors')
    if all(k.startswith('module.') for k in obj):
        obj = {k[len('module.'):]: v for k, v in obj.items()}
    return OrderedDict(obj), entry, others


def is_timm_layout(sd: StateDict) -> bool:
    return 'stem.0.weight' in sd


def convert_timm_state_dict(sd: StateDict) -> StateDict:
    """Official-release / timm InceptionNeXt keys -> our classifier keys (``backbone.*`` and ``head.*``).

    Raises ``CheckpointError`` naming every key it does not recognise.
    """
    out, unknown = OrderedDict(), []
    for k, v in sd.items():
        for pattern, repl in _TIMM_RULES:
            new, n = re.subn(pattern, repl, k)
            if n:
                out[new] = v
                break
        else:
            unknown.append(k)
    if unknown:
        raise CheckpointError(f'not an InceptionNeXt official/timm checkpoint: unrecognised keys {names(unknown)}')
    return out


def classifier_state_dict(path_or_sd) -> StateDict:
    """Any supported file or state dict -> our classifier layout (``backbone.*`` [+ ``head.*``]).

    Given a file, logs which entry of it the weights come from (and which other state dicts it holds)."""
    if isinstance(path_or_sd, str):
        sd, entry, others = select_state_dict(read_checkpoint(path_or_sd))
        print_log(f'weights from {path_or_sd}: ' + (f'entry {entry!r}' if entry else 'the bare state dict')
                  + f', {len(sd)} tensors' + (f' (also in the file, not used: {", ".join(others)})' if others else ''),
                  logger='current')
    else:
        sd = unwrap_state_dict(path_or_sd)
    if is_timm_layout(sd):
        return convert_timm_state_dict(sd)
    if 'stem.conv.weight' in sd:  # a bare backbone state dict of ours
        return OrderedDict(('backbone.' + k, v) for k, v in sd.items())
    return sd


def extract_backbone(sd: StateDict, prefix: Optional[str] = None) -> StateDict:
    """Selects the backbone weights: keys under ``prefix`` (default: ``backbone.``), prefix removed."""
    prefix = prefix or 'backbone.'
    out = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    if not out:
        raise CheckpointError(f'no key starts with prefix {prefix!r}; first keys: {names(list(sd))}')
    return out


def load_backbone_weights(model: nn.Module, path_or_sd, prefix: Optional[str] = None) -> None:
    """Loads a checkpoint into an ``InceptionNeXt`` strictly.

    Every backbone parameter must come from the file with its exact shape, and the file may not hold
    backbone keys the model lacks; only the optional output norms (``out_norms.*``, new for dense heads)
    may be absent. Anything else raises ``CheckpointError`` naming the keys.
    """
    sd = classifier_state_dict(path_or_sd)
    src = extract_backbone(sd, prefix)
    own = model.state_dict()
    problems = state_dict_mismatch(
        own, src, optional=lambda k: k.startswith('out_norms.') or k.endswith('num_batches_tracked'))
    if problems:
        hint = ''
        if 'stem.conv.weight' in src and src['stem.conv.weight'].shape[1] != own['stem.conv.weight'].shape[1]:
            hint = (f' (stem.conv.weight is (dims[0], in_channels, 4, 4): the model has in_channels='
                    f'{own["stem.conv.weight"].shape[1]}, the checkpoint {src["stem.conv.weight"].shape[1]})')
        arch = getattr(model, 'dims', None)
        raise CheckpointError(f'checkpoint does not fit InceptionNeXt (dims={arch}){hint}: {problems}')
    model.load_state_dict(src, strict=False)


def state_dict_mismatch(own: StateDict, src: StateDict, optional=lambda key: False, n: int = 6) -> str:
    """What keeps ``src`` from loading strictly into a model whose state dict is ``own``, or '' if nothing.

    Names the shapes that differ (``key: checkpoint (shape) vs model (shape)``), the keys ``src`` lacks
    (but for ``optional`` ones) and the keys it has in excess, at most ``n`` of each, joined by `` | ``.
    """
    missing = [k for k in own if k not in src and not optional(k)]
    unexpected = [k for k in src if k not in own]
    shapes = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
              for k, v in src.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    parts = [f'shape mismatches: {names(shapes, n, "; ")}' if shapes else '',
             f'missing in checkpoint: {names(missing, n)}' if missing else '',
             f'not in model: {names(unexpected, n)}' if unexpected else '']
    return ' | '.join(p for p in parts if p)


# --------------------------------------------------------------------------------------------------
# Files in, files out (tools/convert_weights.py, tools/extract_backbone.py)
# --------------------------------------------------------------------------------------------------
def read_any_checkpoint(path: str) -> dict:
    """A plain state dict or official file with torch's safe loader; failing that (an MMEngine training
    checkpoint of the user's own runs, which pickles more than tensors), with the full unpickler."""
    try:
        return read_checkpoint(path)
    except CheckpointError as e:
        if 'holds more than tensors' not in str(e):
            raise
    return read_checkpoint(path, trusted=True)


_EMA_KEYS = ('state_dict_ema', 'model_ema')  # timm's and the official train.py's EMA entries


def classifier_weights(path: str, ema: bool = False) -> StateDict:
    """The classifier state dict (``backbone.*`` [+ ``head.*``]) of any supported file; raw or EMA weights.

    EMA: MMEngine's EMAHook *swaps* the two copies when it saves: ``state_dict`` holds the EMA weights and
    ``ema_state_dict`` (keys ``module.*`` plus ``steps``) the raw trained ones; timm-style files keep the
    raw weights in ``state_dict`` / ``model`` and the EMA ones in ``state_dict_ema`` / ``model_ema``.
    """
    ckpt = read_any_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{path} holds no state dict (a {type(ckpt).__name__})')
    if isinstance(ckpt.get('ema_state_dict'), dict):  # MMEngine EMAHook
        if ema:
            return classifier_state_dict(OrderedDict(ckpt['state_dict']))
        return classifier_state_dict(OrderedDict((k[len('module.'):], v) for k, v in ckpt['ema_state_dict'].items()
                                                 if k.startswith('module.')))
    if ema:
        key = next((k for k in _EMA_KEYS if isinstance(ckpt.get(k), dict)), None)
        if key is None:
            raise CheckpointError(f'--ema: {path} has no EMA weights (no "ema_state_dict", '
                                  f'"{_EMA_KEYS[0]}" or "{_EMA_KEYS[1]}" entry)')
        return classifier_state_dict(OrderedDict(ckpt[key]))
    return classifier_state_dict(ckpt)


def save_weights(sd: StateDict, dst: str) -> None:
    """Writes a plain tensor dict (``torch.load(dst, weights_only=True)`` reads it), atomically."""
    if os.path.isdir(dst):
        raise CheckpointError(f'output {dst} is a folder: give a file name, e.g. {os.path.join(dst, "weights.pth")}')
    atomic_save(dict(sd), dst)

"""Identifying, converting and strictly loading InceptionNeXt (and ConvNeXt ablation) weights; files are read by
``backbones.models.checkpoint`` (re-exported here).

Key layouts understood (after unwrapping ``state_dict`` / ``model`` / ``module.`` wrappers):
  InceptionNeXt official / timm  ``stem.{0,1}.*``, ``stages.N.downsample.{0,1}.*``, ``stages.N.blocks.M.*``,
                                 ``head.{fc1,norm,fc2}.*``
  ConvNeXt official              ``downsample_layers.0.{0,1}.*`` (stem), ``downsample_layers.N.{0,1}.*``,
                                 ``stages.N.M.{dwconv[.conv],norm,pwconv1,pwconv2}.*``, ``stages.N.M.gamma``,
                                 ``norm.*``, ``head.*`` (Meta's ConvNeXt files, the InceptionNeXt release's
                                 ``convnext_tiny_k*`` ablation files)
  ConvNeXt timm                  ``stem.{0,1}.*``, ``stages.N.downsample.{0,1}.*``,
                                 ``stages.N.blocks.M.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}``, ``head.{norm,fc}.*``
  ours, backbone                 ``stem.{conv,norm}.*``, ``stages.N.downsample.{norm,conv}.*``, ``stages.N.blocks.M.*``
  ours, classifier               ``backbone.<ours, backbone>`` + ``head.{fc1,norm,fc2}.*`` (train_cls, converter output)
  mmdet / mmseg models           ``backbone.<ours, backbone>`` + their necks and heads
Our block parameters: ``token_mixer.{dwconv_hw,dwconv_w,dwconv_h,dwconv}``, ``norm``, ``mlp.fc{1,2}``, ``gamma``.
Each conversion is a list of (pattern, replacement) rules; every key must match one, and no two keys may
land on the same one.
"""
import os
import re
from collections import OrderedDict
from fractions import Fraction
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import print_log

from backbones.models.checkpoint import (  # noqa: F401 (re-exported: callers read files through weights)
    DOWNLOAD_TIMEOUT_S,
    HUB_PREFIXES,
    TRUST_ENV,
    cache_path,
    download,
    hub_file,
    is_hub_name,
    is_url,
    known_hash,
    load_file,
    read_checkpoint,
    resolve_checkpoint,
    trust_all_checkpoints,
)
from backbones.utils.errors import CheckpointError
from backbones.utils.io import atomic_save, atomic_write, names, refuse_output_over_input

StateDict = Dict[str, torch.Tensor]


# The stem and downsamples of timm's InceptionNeXt and ConvNeXt (and of the official InceptionNeXt release).
_TIMM_STEM_RULES = [
    (r'^stem\.0\.', 'backbone.stem.conv.'),
    (r'^stem\.1\.', 'backbone.stem.norm.'),
    (r'^stages\.(\d+)\.downsample\.0\.', r'backbone.stages.\1.downsample.norm.'),
    (r'^stages\.(\d+)\.downsample\.1\.', r'backbone.stages.\1.downsample.conv.'),
]
_TIMM_RULES = [  # (pattern, replacement) on official/timm InceptionNeXt keys, in order; first match wins
    *_TIMM_STEM_RULES,
    (r'^stages\.(\d+)\.blocks\.', r'backbone.stages.\1.blocks.'),
    (r'^head\.(fc1|norm|fc2)\.', r'head.\1.'),
]
_BLOCK = r'backbone.stages.\1.blocks.\2.'
_CONVNEXT_OFFICIAL_RULES = [  # Meta's ConvNeXt and the InceptionNeXt release's models/convnext.py
    (r'^downsample_layers\.0\.0\.', 'backbone.stem.conv.'),
    (r'^downsample_layers\.0\.1\.', 'backbone.stem.norm.'),
    (r'^downsample_layers\.(\d+)\.0\.', r'backbone.stages.\1.downsample.norm.'),
    (r'^downsample_layers\.(\d+)\.1\.', r'backbone.stages.\1.downsample.conv.'),
    # the plain rows' nn.Conv2d (dwconv.weight) and the par rows' PartialConv2d wrapper (dwconv.conv.weight)
    (r'^stages\.(\d+)\.(\d+)\.dwconv\.(?:conv\.)?', _BLOCK + 'token_mixer.dwconv.'),
    (r'^stages\.(\d+)\.(\d+)\.norm\.', _BLOCK + 'norm.'),
    (r'^stages\.(\d+)\.(\d+)\.pwconv1\.', _BLOCK + 'mlp.fc1.'),
    (r'^stages\.(\d+)\.(\d+)\.pwconv2\.', _BLOCK + 'mlp.fc2.'),
    (r'^stages\.(\d+)\.(\d+)\.gamma$', _BLOCK + 'gamma'),
    (r'^norm\.', 'head.norm.'),
    (r'^head\.', 'head.fc2.'),
]
_CONVNEXT_TIMM_RULES = [  # timm.models.convnext.ConvNeXt (Linear MLP: conv_mlp=False)
    *_TIMM_STEM_RULES,
    (r'^stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.', _BLOCK + 'token_mixer.dwconv.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.(norm\.|mlp\.fc1\.|mlp\.fc2\.|gamma$)', _BLOCK + r'\3'),
    (r'^head\.norm\.', 'head.norm.'),
    (r'^head\.fc\.', 'head.fc2.'),
]
# Layouts the converter maps: name -> (what the file is, rules).
LAYOUTS = OrderedDict([
    ('inceptionnext-official/timm', ('InceptionNeXt official release / timm', _TIMM_RULES)),
    ('convnext-official', ("official ConvNeXt (Meta's release, the InceptionNeXt release's ConvNeXt ablations)",
                           _CONVNEXT_OFFICIAL_RULES)),
    ('convnext-timm', ("timm's ConvNeXt", _CONVNEXT_TIMM_RULES)),
])
OTHER_LAYOUTS = {'ours-backbone': 'our backbone', 'ours': 'our classifier / mmdet / mmseg',
                  'unknown': 'an unknown'}


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


def model_state_dict(obj) -> StateDict:
    """The weights of a checkpoint as our models name them: unwrapped (``unwrap_state_dict``), and converted
    when they are in an official / timm layout (``LAYOUTS``), as the backbone loader does; other layouts as
    they are. What ``tools/test.py``, the demos, the exporter and the Runner's ``load_from`` load."""
    sd = unwrap_state_dict(obj)
    layout = detect_layout(sd)
    return convert_state_dict(sd, layout) if layout in LAYOUTS else sd


def detect_layout(sd: StateDict) -> str:
    """The key layout of an unwrapped state dict: a ``LAYOUTS`` name, ``'ours-backbone'`` (a bare backbone of
    ours), ``'ours'`` (``backbone.*`` keys: our classifier, an mmdet / mmseg model) or ``'unknown'``.
    timm's InceptionNeXt and ConvNeXt share the stem and downsample keys; their blocks tell them apart
    (``conv_dw`` is ConvNeXt's depthwise conv, InceptionNeXt's mixer is ``token_mixer.*``)."""
    if 'downsample_layers.0.0.weight' in sd:
        return 'convnext-official'
    if 'stem.0.weight' in sd:
        return 'convnext-timm' if any('.conv_dw.' in k for k in sd) else 'inceptionnext-official/timm'
    if 'stem.conv.weight' in sd:
        return 'ours-backbone'
    if any(k.startswith('backbone.') for k in sd):
        return 'ours'
    return 'unknown'


def convert_state_dict(sd: StateDict, layout: str) -> StateDict:
    """Keys of ``layout`` (a ``LAYOUTS`` name) -> our classifier keys (``backbone.*`` and ``head.*``).

    Raises ``CheckpointError`` naming every key no rule maps, or keys two sources would both fill."""
    what, rules = LAYOUTS[layout]
    out, unknown, sources = OrderedDict(), [], {}
    for k, v in sd.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, k)
            if n:
                if new in out:
                    raise CheckpointError(f'not a checkpoint in the {what} layout: {sources[new]} and {k} both map to '
                                          f'{new}')
                out[new], sources[new] = v, k
                break
        else:
            unknown.append(k)
    if unknown:
        raise CheckpointError(f'not a checkpoint in the {what} layout: unrecognised keys {names(unknown)}')
    return out


def convert_timm_state_dict(sd: StateDict) -> StateDict:
    """Official-release / timm keys (InceptionNeXt, ConvNeXt official or timm; detected) -> our classifier
    keys (``backbone.*`` and ``head.*``). Raises ``CheckpointError`` naming every key it does not recognise."""
    layout = detect_layout(sd)
    return convert_state_dict(sd, layout if layout in LAYOUTS else 'inceptionnext-official/timm')


def identify(path_or_sd) -> Tuple[str, StateDict]:
    """``(layout, state dict in our classifier layout)`` of any supported file or state dict (unknown
    layouts pass through unchanged, for a caller's own ``prefix``)."""
    if isinstance(path_or_sd, str):
        sd, entry, others = select_state_dict(read_checkpoint(path_or_sd))
        print_log(f'weights from {path_or_sd}: ' + (f'entry {entry!r}' if entry else 'the bare state dict')
                  + f', {len(sd)} tensors' + (f' (also in the file, not used: {", ".join(others)})' if others else ''),
                  logger='current')
    else:
        sd = unwrap_state_dict(path_or_sd)
    layout = detect_layout(sd)
    if layout in LAYOUTS:
        return layout, convert_state_dict(sd, layout)
    if layout == 'ours-backbone':  # a bare backbone state dict of ours
        return layout, OrderedDict(('backbone.' + k, v) for k, v in sd.items())
    return layout, sd


def classifier_state_dict(path_or_sd) -> StateDict:
    """Any supported file or state dict -> our classifier layout (``backbone.*`` [+ ``head.*``]).

    Given a file, logs which entry of it the weights come from (and which other state dicts it holds)."""
    return identify(path_or_sd)[1]


# --------------------------------------------------------------------------------------------------
# What a checkpoint is, read off its shapes (for errors that say it)
# --------------------------------------------------------------------------------------------------
def _ratio(part: int, whole: int) -> str:
    return '1' if part == whole else str(Fraction(part, whole).limit_denominator(64))


def describe_weights(sd: StateDict) -> str:
    """The network a classifier-layout state dict holds, read off its keys and shapes: depths, dims, token
    mixer (kernel sizes, partial ratio), norms, MLP form and ratios, head."""
    b = OrderedDict((k[len('backbone.'):], v) for k, v in sd.items() if k.startswith('backbone.'))
    if 'stem.conv.weight' not in b or b['stem.conv.weight'].dim() != 4:
        return 'no InceptionNeXt / ConvNeXt backbone in it'
    blocks: Dict[int, set] = {}
    for k in b:
        m = re.match(r'^stages\.(\d+)\.blocks\.(\d+)\.', k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    stages = sorted(blocks)
    depths = tuple(len(blocks[i]) for i in stages)
    dims = [b['stem.conv.weight'].shape[0]] + [b[f'stages.{i}.downsample.conv.weight'].shape[0]
                                               for i in stages[1:] if f'stages.{i}.downsample.conv.weight' in b]
    parts = [f'depths {depths}, dims {tuple(dims)}']
    mixers, norms, mlps = [], set(), []
    for i, c in zip(stages, dims):
        p = f'stages.{i}.blocks.0.'
        if p + 'token_mixer.dwconv_hw.weight' in b:
            sq, band = b[p + 'token_mixer.dwconv_hw.weight'], b[p + 'token_mixer.dwconv_w.weight']
            mixers.append((f'Inception {sq.shape[-1]}x{sq.shape[-1]} + 1x{band.shape[-1]} + {band.shape[-1]}x1 '
                           f'depthwise convs, branch ratio {_ratio(sq.shape[0], c)}', sq.shape[0], c))
        elif p + 'token_mixer.dwconv.weight' in b:
            w = b[p + 'token_mixer.dwconv.weight']
            kernel = 'x'.join(str(n) for n in w.shape[2:])
            partial = '' if w.shape[0] == c else f', partial ratio {_ratio(w.shape[0], c)}'
            mixers.append((f'{kernel} depthwise conv{partial}', w.shape[0], c))
        else:
            mixers.append(('unknown token mixer', 0, c))
        norms.add('BatchNorm' if p + 'norm.running_mean' in b else 'LayerNorm' if p + 'norm.weight' in b
                  else 'no norm')
        fc1 = b.get(p + 'mlp.fc1.weight')
        if fc1 is not None:
            mlps.append((fc1.dim(), _ratio(fc1.shape[0], c)))
    if mixers and len({m[0] for m in mixers}) == 1:
        counts = ', '.join(f'{n}/{c}' for _, n, c in mixers)
        parts.append(f'token mixer: {mixers[0][0]}'
                     + (f' (on {counts} channels per stage)' if mixers[0][1] != mixers[0][2] else ''))
    else:
        parts.append('token mixers: ' + '; '.join(f'stage {i}: {m[0]}' for i, m in zip(stages, mixers)))
    parts.append(f'blocks: {"/".join(sorted(norms))}')
    if mlps:
        form = {2: 'Linear MLP on channels-last features', 4: '1x1-conv MLP'}.get(mlps[0][0], 'MLP')
        parts.append(f'{form}, ratios {"/".join(r for _, r in mlps)}')
    parts.append('layer scale' if 'stages.0.blocks.0.gamma' in b else 'no layer scale')
    stem_norm = ('BatchNorm' if 'stem.norm.running_mean' in b else
                 'LayerNorm' if 'stem.norm.weight' in b else 'no norm')
    parts.append(f'stem norm: {stem_norm}')
    if 'head.fc2.weight' in sd:
        fc1 = sd.get('head.fc1.weight')
        head = (f'MLP head (ratio {_ratio(fc1.shape[0], fc1.shape[1])})' if fc1 is not None
                else 'pool-LayerNorm-Linear head')
        parts.append(f'{head}, {sd["head.fc2.weight"].shape[0]} classes')
    return ', '.join(parts)


def extract_backbone(sd: StateDict, prefix: Optional[str] = None) -> StateDict:
    """Selects the backbone weights: keys under ``prefix`` (default: ``backbone.``), prefix removed."""
    prefix = prefix or 'backbone.'
    out = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    if not out:
        known = '; '.join(what for what, _ in LAYOUTS.values())
        raise CheckpointError(f'no key starts with prefix {prefix!r}; first keys: {names(list(sd))} (layouts the '
                              f'converter maps: {known}; ours: backbone.* / stem.conv.*)')
    return out


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


def load_strict(model: torch.nn.Module, sd: StateDict, optional=lambda key: False, n: int = 6) -> str:
    """The strict fit every loader of the suite uses: loads ``sd`` into ``model`` when every key and shape fits
    (``optional`` keys and BatchNorm's ``num_batches_tracked`` may be absent) and returns ''; otherwise loads
    nothing and returns what does not fit (``state_dict_mismatch``), for the caller's error."""
    problems = state_dict_mismatch(model.state_dict(), sd, n=n,
                                   optional=lambda k: k.endswith('num_batches_tracked') or optional(k))
    if not problems:
        model.load_state_dict(sd, strict=False)
    return problems


# --------------------------------------------------------------------------------------------------
# Files in, files out (tools/model_converters/convert_weights.py, tools/model_converters/extract_backbone.py)
# --------------------------------------------------------------------------------------------------
_EMA_KEYS = ('state_dict_ema', 'model_ema')  # timm's and the official train.py's EMA entries


def classifier_weights(path: str, ema: bool = False, ckpt=None) -> StateDict:
    """The classifier state dict (``backbone.*`` [+ ``head.*``]) of any supported file; raw or EMA weights.

    EMA: MMEngine's EMAHook *swaps* the two copies when it saves: ``state_dict`` holds the EMA weights and
    ``ema_state_dict`` (keys ``module.*`` plus ``steps``) the raw trained ones; timm-style files keep the
    raw weights in ``state_dict`` / ``model`` and the EMA ones in ``state_dict_ema`` / ``model_ema``.
    """
    ckpt = read_checkpoint(path) if ckpt is None else ckpt  # (a caller that read the file already passes it)
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


# --------------------------------------------------------------------------------------------------
# Publishing a training checkpoint (tools/model_converters/publish_model.py)
# --------------------------------------------------------------------------------------------------
PUBLISHED_META = ('cfg', 'dataset_meta', 'mmengine_version', 'experiment_name', 'seed', 'epoch', 'iter', 'time')


def publish_checkpoint(src: str, out: str) -> str:
    """Writes the published form of a training checkpoint, as OpenMMLab's ``publish_model.py``: the weights
    (``state_dict``; with MMEngine's EMAHook these are the averaged ones, as its checkpoints store them) and
    ``meta`` (``PUBLISHED_META``: the config, ``dataset_meta`` with the class names and palette, versions);
    no optimizer, schedulers, message hub or RNG states. The file is named ``<out without .pth>-<first 8 hex
    digits of its sha256>.pth``; returns that path. It loads with ``torch.load(weights_only=True)``."""
    import hashlib
    import io
    refuse_output_over_input(out, {'checkpoint': src}, 'output')
    ckpt = read_checkpoint(src)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('state_dict'), dict):
        keys = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f'{src} is not an MMEngine checkpoint (no "state_dict" entry; it holds {keys})')
    sd = OrderedDict((k, v) for k, v in ckpt['state_dict'].items())
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'{src}: state_dict entries that are not tensors: {names(bad)}')
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    published = {'meta': {k: meta[k] for k in PUBLISHED_META if k in meta}, 'state_dict': sd}
    buf = io.BytesIO()
    torch.save(published, buf)
    data = buf.getvalue()
    try:  # what every client will do with it
        torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f'{src}: its meta holds values torch\'s weights_only loader refuses: '
                              f'{str(e).strip().splitlines()[0][:300]}') from None
    stem = out[:-len('.pth')] if out.endswith('.pth') else out
    if os.path.isdir(out) or not os.path.basename(stem):
        raise CheckpointError(f'output {out} is a folder: give a file name, e.g. {os.path.join(out, "model.pth")}')
    final = f'{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth'
    refuse_output_over_input(final, {'checkpoint': src}, 'output')
    atomic_write(final, lambda f: f.write(data))
    return final

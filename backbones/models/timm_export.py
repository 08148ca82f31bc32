"""Our weights in timm's ``inception_next_*`` layout: the way back from a classifier pretrained with train_cls (or
a dense model's backbone) to timm, as a file or a timm hub folder (``config.json`` + ``model.safetensors`` /
``pytorch_model.bin``) that ``timm.create_model('local-dir:FOLDER', pretrained=True)`` loads strictly.

The key map is the inverse of ``weights._TIMM_RULES`` (5 rules: the stem's and downsamples' module names, and
the ``backbone.`` prefix of the stages); the blocks' and head's parameter names are timm's already. Our
dense-only per-output norms (``out_norms.*``) have no place in timm and are left out (and said so).

timm has the four paper variants (``TIMM_NAMES``); arches of ours outside them (ConvNeXt ablation rows, custom
dicts) are refused. A backbone without its classifier head loads into timm as a feature extractor
(``features_only=True, pretrained_strict=False``: only the absent ``head.*`` stays at its init).
"""
import json
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from backbones.models.inceptionnext import InceptionNeXt, fitting_arches
from backbones.models.weights import StateDict, classifier_weights, read_checkpoint
from backbones.utils.errors import CheckpointError, UserInputError
from backbones.utils.io import atomic_save, atomic_write, names

TIMM_NAMES = {'atto': 'inception_next_atto', 'tiny': 'inception_next_tiny', 'small': 'inception_next_small',
              'base': 'inception_next_base'}
_TO_TIMM_RULES = [  # (pattern, replacement) on our classifier keys; the inverse of weights._TIMM_RULES
    (r'^backbone\.stem\.conv\.', 'stem.0.'),
    (r'^backbone\.stem\.norm\.', 'stem.1.'),
    (r'^backbone\.stages\.(\d+)\.downsample\.norm\.', r'stages.\1.downsample.0.'),
    (r'^backbone\.stages\.(\d+)\.downsample\.conv\.', r'stages.\1.downsample.1.'),
    (r'^backbone\.stages\.(\d+)\.blocks\.', r'stages.\1.blocks.'),
    (r'^head\.(fc1|norm|fc2)\.', r'head.\1.'),
]
_DROPPED = re.compile(r'^backbone\.out_norms\.')  # the dense configs' per-output norms: not part of timm's model
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # timm's, on 0..1 values
FORMATS = ('safetensors', 'pth', 'both')


def to_timm_state_dict(sd: StateDict) -> Tuple[StateDict, List[str]]:
    """Our classifier-layout keys (``backbone.*`` [+ ``head.*``]) -> timm's; returns (state dict, dropped keys).

    Raises ``CheckpointError`` naming keys no rule maps (the output would not load strictly into timm)."""
    out, dropped, unknown = OrderedDict(), [], []
    for k, v in sd.items():
        if _DROPPED.match(k):
            dropped.append(k)
            continue
        for pattern, repl in _TO_TIMM_RULES:
            new, n = re.subn(pattern, repl, k)
            if n:
                out[new] = v
                break
        else:
            unknown.append(k)
    if unknown:
        raise CheckpointError(f'keys with no place in timm\'s InceptionNeXt: {names(unknown)}')
    return out, dropped


def timm_arch(sd: StateDict, arch: Optional[str] = None) -> str:
    """The arch of ours (one timm has) that a classifier-layout state dict is, or ``arch`` checked against it."""
    backbone = OrderedDict((k, v) for k, v in sd.items() if not _DROPPED.match(k))
    fits = [a for a in fitting_arches(backbone) if a in TIMM_NAMES]
    if arch is not None:
        arch = InceptionNeXt.arch_aliases.get(arch.lower(), arch.lower())
        if arch not in TIMM_NAMES:
            raise UserInputError(f'--arch {arch}: timm has InceptionNeXt {", ".join(TIMM_NAMES)} only')
        if arch not in fits:
            raise CheckpointError(f'the weights do not fit InceptionNeXt-{arch} (they fit: '
                                  f'{", ".join(fitting_arches(backbone)) or "no arch of ours"})')
        return arch
    if not fits:
        others = fitting_arches(backbone)
        raise CheckpointError('the weights are no InceptionNeXt variant timm has ('
                              + ', '.join(TIMM_NAMES) + ')' + (f'; they fit {", ".join(others)}' if others else ''))
    return fits[0]


def timm_config(arch: str, num_classes: int, input_size: int = 224, source: str = '') -> dict:
    """A timm hub folder's ``config.json``: architecture, classes and the pretrained_cfg (eval preprocessing as
    timm's own ``sail_in1k`` tags: bicubic, crop_pct 0.875 (base 0.95) at 224 and 1.0 at 384, ImageNet mean /
    std)."""
    dims = InceptionNeXt.resolve_arch(arch)['dims']
    crop_pct = 1.0 if input_size != 224 else 0.95 if arch == 'base' else 0.875
    pretrained_cfg = dict(
        tag=f'inceptionnext_{arch}', custom_load=False, input_size=[3, input_size, input_size],
        fixed_input_size=False, interpolation='bicubic', crop_pct=crop_pct,
        crop_mode='center', mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), num_classes=num_classes,
        pool_size=[input_size // 32, input_size // 32], first_conv='stem.0', classifier='head.fc2',
        license='apache-2.0')
    return dict(architecture=TIMM_NAMES[arch], num_classes=num_classes, num_features=dims[-1],
                pretrained_cfg=pretrained_cfg)


def export_timm(src: str, out: str, arch: Optional[str] = None, fmt: str = 'safetensors', ema: bool = False,
                input_size: int = 224, backbone_only: bool = False, log=print) -> Dict[str, str]:
    """Writes ``src`` (ours: train_cls classifier / backbone / mmdet or mmseg checkpoint; official / timm files
    too) in timm's layout.

    ``out`` ending in ``.pth`` / ``.bin`` / ``.safetensors``: one state dict file (for
    ``pretrained_cfg_overlay=dict(file=...)``); otherwise a hub folder: ``config.json`` plus
    ``model.safetensors`` and / or ``pytorch_model.bin`` (``fmt``). Returns {what: path}.
    """
    if fmt not in FORMATS:
        raise UserInputError(f'--format {fmt}: one of {", ".join(FORMATS)}')
    ckpt = read_checkpoint(src)
    sd = classifier_weights(src, ema, ckpt=ckpt)
    others = sorted({k.split('.')[0] for k in sd if not k.startswith(('backbone.', 'head.'))})
    if others:  # an mmdet / mmseg model: its backbone
        log(f'{osp.basename(src)}: a dense model ({", ".join(others)} besides the backbone): exporting its backbone')
    if backbone_only or others:
        sd = OrderedDict((k, v) for k, v in sd.items() if k.startswith('backbone.'))
    arch = timm_arch(sd, arch)
    timm_sd, dropped = to_timm_state_dict(sd)
    has_head = 'head.fc2.weight' in timm_sd
    num_classes = int(timm_sd['head.fc2.weight'].shape[0]) if has_head else 0
    if dropped:
        log(f'left out {len(dropped)} tensors of the dense per-output norms (not in timm): {names(dropped, 3)}')
    timm_sd = OrderedDict((k, v.detach().contiguous()) for k, v in timm_sd.items())
    written = {}
    ext = osp.splitext(out)[1].lower()
    if ext in ('.pth', '.bin', '.safetensors'):
        if osp.isdir(out):
            raise UserInputError(f'output {out} is a folder')
        _save(timm_sd, out, 'safetensors' if ext == '.safetensors' else 'pth')
        written['weights'] = out
    else:
        if osp.isfile(out):
            raise UserInputError(f'output {out} is a file: a hub folder is written to a folder (or give '
                                 'OUT.pth / OUT.safetensors for one file)')
        os.makedirs(out, exist_ok=True)
        if fmt in ('safetensors', 'both'):
            written['weights'] = _save(timm_sd, osp.join(out, 'model.safetensors'), 'safetensors')
        if fmt in ('pth', 'both'):
            written['weights_pth'] = _save(timm_sd, osp.join(out, 'pytorch_model.bin'), 'pth')
        cfg = timm_config(arch, num_classes, input_size, osp.basename(src))
        classes = _class_names(ckpt)
        if has_head and classes and len(classes) == num_classes:  # Hugging Face pipelines show these names
            cfg['label_names'] = classes
        text = json.dumps(cfg, indent=2) + '\n'
        written['config'] = osp.join(out, 'config.json')
        atomic_write(written['config'], lambda f: f.write(text.encode()))
    n = sum(v.numel() for v in timm_sd.values())
    log(f'timm {TIMM_NAMES[arch]}: {len(timm_sd)} tensors, {n / 1e6:.2f}M values, '
        + (f'{num_classes}-class head' if has_head else 'no classifier head (load with features_only=True, '
           'pretrained_strict=False)') + ' -> ' + ', '.join(written.values()))
    return written


def _class_names(ckpt) -> list:
    """The class names a training checkpoint of ours carries (``meta.dataset_meta.classes``), or []."""
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    classes = ((meta or {}).get('dataset_meta') or {}).get('classes') if isinstance(meta, dict) else None
    return [str(c) for c in classes] if isinstance(classes, (list, tuple)) else []


def _save(sd: StateDict, path: str, fmt: str) -> str:
    if fmt == 'safetensors':
        from safetensors.torch import save as st_save
        data = st_save(dict(sd), metadata={'format': 'pt'})
        atomic_write(path, lambda f: f.write(data))
    else:
        atomic_save(dict(sd), path)
    return path

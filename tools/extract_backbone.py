"""Turn a classification checkpoint into the backbone weights the detection / segmentation configs load.

    python tools/extract_backbone.py work_dirs/inceptionnext_t_in1k/epoch_300.pth checkpoints/inx_t_backbone.pth
    python tools/extract_backbone.py CKPT OUT --ema            # the EMA weights (runs with EMAHook)
    python tools/extract_backbone.py CKPT OUT --with-head      # whole classifier (backbone.* + head.*),
                                                              # e.g. to start the 384 fine-tune from it
    python tools/extract_backbone.py CKPT OUT --arch tiny      # also check it loads strictly into tiny

The dense configs then point at OUT: ``backbone=dict(..., init_cfg=dict(type='Pretrained', checkpoint=OUT))``.

CKPT may be a training checkpoint of tools/train.py (MMEngine: ``state_dict`` + ``meta`` + optimizer,
and with EMAHook an ``ema_state_dict``), a plain state dict in our classifier layout, or an official /
timm file. MMEngine checkpoints pickle more than tensors (its logging state), so after torch's safe
loader refuses one it is read with the full unpickler, as tools/train.py reads its own checkpoints: only
pass files from your own runs.

EMA: MMEngine's EMAHook *swaps* the two copies when it saves: ``state_dict`` holds the EMA weights and
``ema_state_dict`` (keys ``module.*`` plus ``steps``) the raw trained ones. This tool undoes that: by
default it writes the raw weights, with ``--ema`` the averaged ones.

OUT is a plain tensor dict (``torch.load(OUT, weights_only=True)`` reads it), written atomically.
"""
import argparse
import os
import sys
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from backbones import (CheckpointError, InceptionNeXt, classifier_state_dict, extract_backbone,  # noqa: E402
                       load_backbone_weights, read_checkpoint)


def _read(path: str):
    try:
        return read_checkpoint(path)  # plain state dicts and official files: torch's safe loader
    except CheckpointError as e:
        if 'holds more than tensors' not in str(e):
            raise
    return read_checkpoint(path, trusted=True)  # an MMEngine training checkpoint of our own runs


def classifier_weights(path: str, ema: bool = False) -> 'OrderedDict[str, torch.Tensor]':
    """The classifier state dict (``backbone.*`` [+ ``head.*``]) of any supported file; raw or EMA weights."""
    ckpt = _read(path)
    has_ema = isinstance(ckpt, dict) and isinstance(ckpt.get('ema_state_dict'), dict)
    if ema and not has_ema:
        raise CheckpointError(f'--ema: {path} has no EMA weights (no "ema_state_dict": trained without '
                              'EMAHook)')
    if has_ema:
        if ema:  # EMAHook.before_save_checkpoint swapped the averaged weights into state_dict
            sd = ckpt['state_dict']
        else:    # ... and the raw ones into ema_state_dict, as module.<key>
            sd = OrderedDict((k[len('module.'):], v) for k, v in ckpt['ema_state_dict'].items()
                             if k.startswith('module.'))
        return classifier_state_dict(OrderedDict(sd))
    return classifier_state_dict(ckpt)


def extract(src: str, dst: str, ema: bool = False, with_head: bool = False, arch: str = None) -> dict:
    sd = classifier_weights(src, ema)
    out = OrderedDict(sd) if with_head else extract_backbone(sd)
    if arch:  # strict fit check against the named variant
        load_backbone_weights(InceptionNeXt(arch), OrderedDict(sd))
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(dict(out), tmp)
    os.replace(tmp, dst)  # never a half-written file under the final name
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('checkpoint', help='classification checkpoint (tools/train.py output, or converted weights)')
    p.add_argument('out', help='backbone state dict to write')
    p.add_argument('--ema', action='store_true', help='take the EMA weights (checkpoints of runs with EMAHook)')
    p.add_argument('--with-head', action='store_true',
                   help='keep the whole classifier (backbone.* + head.*) instead of the bare backbone')
    p.add_argument('--arch', help='check that the weights load strictly into this variant (atto, tiny, ...)')
    args = p.parse_args(argv)
    try:
        out = extract(args.checkpoint, args.out, args.ema, args.with_head, args.arch)
    except (CheckpointError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    n = sum(v.numel() for v in out.values())
    print(f'wrote {args.out}: {"EMA" if args.ema else "raw"} weights, {len(out)} tensors, {n / 1e6:.2f}M values'
          + (' (classifier layout)' if args.with_head else ' (backbone)')
          + (f', fits InceptionNeXt-{args.arch}' if args.arch else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Turn a classification checkpoint into the backbone weights the detection / segmentation configs load.

    python tools/model_converters/extract_backbone.py work_dirs/inceptionnext-t_8xb128-300e_in1k/epoch_300.pth \
        checkpoints/inx_t_backbone.pth
    python tools/model_converters/extract_backbone.py CKPT OUT --ema            # the EMA weights (runs with EMAHook)
    python tools/model_converters/extract_backbone.py CKPT OUT --with-head  # whole classifier (backbone.* + head.*),
                                                          # e.g. to start the 384 fine-tune from it
    python tools/model_converters/extract_backbone.py CKPT OUT --arch tiny      # also check it loads strictly into tiny

The dense configs then point at OUT: ``backbone=dict(..., init_cfg=dict(type='Pretrained', checkpoint=OUT))``.

CKPT may be a training checkpoint of tools/train.py (MMEngine: ``state_dict`` + ``meta`` + optimizer,
and with EMAHook an ``ema_state_dict``), a plain state dict in our classifier layout, or an official /
timm file. MMEngine checkpoints pickle more than tensors (its logging state), so after torch's safe
loader refuses one it is read with the full unpickler, as tools/train.py reads its own checkpoints: only
pass files from your own runs.

EMA: by default the tool writes the raw trained weights, with ``--ema`` the averaged ones, from MMEngine's
EMAHook checkpoints (which swap the two copies when saving) and timm-style ``state_dict_ema`` /
``model_ema`` entries alike (``backbones.models.weights.classifier_weights``).

OUT is a plain tensor dict (``torch.load(OUT, weights_only=True)`` reads it), written atomically.
"""
import argparse
from collections import OrderedDict

from backbones import extract_backbone
from backbones.apis.build import check_weights_fit
from backbones.models.weights import classifier_weights, save_weights
from backbones.utils.cli import run_cli
from backbones.utils.io import refuse_output_over_input


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('checkpoint', help='classification checkpoint (tools/train.py output, or converted weights)')
    p.add_argument('out', help='backbone state dict to write')
    p.add_argument('--ema', action='store_true', help='take the EMA weights (checkpoints of runs with EMAHook)')
    p.add_argument('--with-head', action='store_true',
                   help='keep the whole classifier (backbone.* + head.*) instead of the bare backbone')
    p.add_argument('--arch', help='check that the weights load strictly into this variant (atto, tiny, ...)')
    args = p.parse_args(argv)
    refuse_output_over_input(args.out, {'checkpoint': args.checkpoint}, 'OUT')
    sd = classifier_weights(args.checkpoint, args.ema)
    out = OrderedDict(sd) if args.with_head else extract_backbone(sd)
    if args.arch:  # strict fit check against the named variant (with --with-head: its head too)
        check_weights_fit(args.arch, OrderedDict(sd))
    save_weights(out, args.out)
    n = sum(v.numel() for v in out.values())
    print(f'wrote {args.out}: {"EMA" if args.ema else "raw"} weights, {len(out)} tensors, {n / 1e6:.2f}M values'
          + (' (classifier layout)' if args.with_head else ' (backbone)')
          + (f', fits InceptionNeXt-{args.arch}' if args.arch else ''))
    return 0


if __name__ == '__main__':
    run_cli(main)

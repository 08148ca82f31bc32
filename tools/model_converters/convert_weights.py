"""Convert InceptionNeXt / ConvNeXt weights into the layouts our configs load, and ours back into timm's.

From the official release / timm / ConvNeXt files to ours (the default, ``--to ours``):

    # official release / timm checkpoint -> our classifier layout (backbone.* + head.*)
    python tools/model_converters/convert_weights.py inceptionnext_tiny.pth inx_t_cls.pth
    # ... -> a bare backbone state dict, what the dense configs' init_cfg usually points at
    python tools/model_converters/convert_weights.py inceptionnext_tiny.pth inx_t_backbone.pth --backbone-only
    # check that it fits a variant before writing (builds the model and loads it strictly)
    python tools/model_converters/convert_weights.py inceptionnext_tiny.pth inx_t_backbone.pth --backbone-only \
        --arch tiny
    # the paper's ConvNeXt ablation rows as released (Meta's ConvNeXt-T file, the InceptionNeXt release's
    # convnext_tiny_k* files, or timm's ConvNeXt), under the seed's names
    python tools/model_converters/convert_weights.py convnext_tiny_1k_224_ema.pth convnext_t_cls.pth \
        --arch convnext_tiny
    python tools/model_converters/convert_weights.py convnext_tiny_k3_par1_8_1k_224_ema.pth k3_par1_8.pth \
        --arch convnext_tiny_k3_par1_8

From ours back to timm's ``inception_next_*`` layout (``--to timm``; backbones.models.timm_export): a classifier
pretrained with train_cls, a converted file, or the backbone of an mmdet / mmseg checkpoint:

    # a timm hub folder (config.json + model.safetensors): timm.create_model('local-dir:inx_t_timm', pretrained=True)
    python tools/model_converters/convert_weights.py work_dirs/inceptionnext-t_8xb128-300e_in1k/epoch_300.pth \
        inx_t_timm --to timm
    python tools/model_converters/convert_weights.py CKPT inx_t_timm --to timm --format both   # + pytorch_model.bin
    # one file, for timm.create_model('inception_next_tiny', pretrained=True, pretrained_cfg_overlay=dict(file=...))
    python tools/model_converters/convert_weights.py CKPT inception_next_tiny.safetensors --to timm --ema
    # a backbone (no classifier head): timm loads it with features_only=True, pretrained_strict=False
    python tools/model_converters/convert_weights.py work_dirs/upernet_inceptionnext_t/iter_160000.pth t_feats --to timm

timm's model must be the arch the weights are (atto, tiny, small, base; detected, or checked with --arch); the
dense configs' per-output norms (out_norms.*) are not part of timm's model and are left out.

Layouts: InceptionNeXt official / timm, ConvNeXt official (with or without the "model" wrapper) and timm's
ConvNeXt (detected from the keys; see backbones/models/weights.py). Input wrappers (``state_dict`` / ``model``
/ ``module.``) are stripped; unknown keys, shape mismatches and unreadable files are errors that name the
problem, the layout detected, what the file holds and which arches fit it. The output is a plain tensor dict,
readable with torch.load(weights_only=True).
"""
import argparse

from backbones import InceptionNeXt, extract_backbone
from backbones.apis.build import check_weights_fit
from backbones.models.timm_export import FORMATS, export_timm
from backbones.models.weights import identify, read_checkpoint, save_weights, unwrap_state_dict
from backbones.utils.cli import run_cli
from backbones.utils.errors import UserInputError
from backbones.utils.io import refuse_output_over_input


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--backbone-only', action='store_true', help='write only the backbone, without "backbone."')
    p.add_argument('--arch', help='check the weights load strictly into this variant: '
                   + ', '.join(InceptionNeXt.arch_settings))
    p.add_argument('--to', choices=('ours', 'timm'), default='ours',
                   help="the output layout: ours (default) or timm's inception_next_* (a hub folder, or one file "
                        "when DST ends in .pth / .bin / .safetensors)")
    p.add_argument('--format', choices=FORMATS, default='safetensors',
                   help='--to timm, hub folder: model.safetensors (default), pytorch_model.bin, or both')
    p.add_argument('--ema', action='store_true', help='--to timm: the EMA weights of a training checkpoint')
    p.add_argument('--input-size', type=int, default=224, help="--to timm: the pretrained_cfg's input size "
                   '(224; 384 for the base-384 fine-tune)')
    args = p.parse_args(argv)
    refuse_output_over_input(args.dst, {'SRC': args.src}, 'DST',
                             inside=('model.safetensors', 'pytorch_model.bin', 'config.json'))
    if args.to == 'timm':
        export_timm(args.src, args.dst, arch=args.arch, fmt=args.format, ema=args.ema,
                    input_size=args.input_size, backbone_only=args.backbone_only)
        return 0
    if args.ema or args.format != 'safetensors' or args.input_size != 224:
        raise UserInputError('--ema, --format and --input-size apply to --to timm only')
    raw = unwrap_state_dict(read_checkpoint(args.src))
    _, sd = identify(raw)
    if args.arch:  # strict fit check against the named variant
        check_weights_fit(args.arch, raw)
    if args.backbone_only:
        sd = extract_backbone(sd)
    save_weights(sd, args.dst)
    n = sum(v.numel() for v in sd.values())
    print(f'wrote {args.dst}: {len(sd)} tensors, {n / 1e6:.2f}M values'
          + (f', fits arch {args.arch}' if args.arch else ''))
    return 0


if __name__ == '__main__':
    run_cli(main)

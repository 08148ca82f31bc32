"""Convert InceptionNeXt / ConvNeXt weights into the layouts our configs load.

    # official release / timm checkpoint -> our classifier layout (backbone.* + head.*)
    python tools/model_converters/convert_weights.py inceptionnext_tiny.pth inx_t_cls.pth
    # ... -> a bare backbone state dict, what the dense configs' init_cfg usually points at
    python tools/model_converters/convert_weights.py inceptionnext_tiny.pth inx_t_backbone.pth --backbone-only
    # check that it fits a variant before writing (builds the model and loads it strictly)
    python tools/model_converters/convert_weights.py inceptionnext_tiny.pth inx_t_backbone.pth --backbone-only --arch tiny
    # the paper's ConvNeXt ablation rows as released (Meta's ConvNeXt-T file, the InceptionNeXt release's
    # convnext_tiny_k* files, or timm's ConvNeXt), under the seed's names
    python tools/model_converters/convert_weights.py convnext_tiny_1k_224_ema.pth convnext_t_cls.pth --arch convnext_tiny
    python tools/model_converters/convert_weights.py convnext_tiny_k3_par1_8_1k_224_ema.pth k3_par1_8.pth --arch convnext_tiny_k3_par1_8

Layouts: InceptionNeXt official / timm, ConvNeXt official (with or without the "model" wrapper) and timm's
ConvNeXt (detected from the keys; see backbones/models/weights.py). Input wrappers (``state_dict`` / ``model``
/ ``module.``) are stripped; unknown keys, shape mismatches and unreadable files are errors that name the
problem, the layout detected, what the file holds and which arches fit it. The output is a plain tensor dict,
readable with torch.load(weights_only=True).
"""
import argparse

from backbones import InceptionNeXt, extract_backbone
from backbones.apis.build import check_weights_fit
from backbones.models.weights import identify, read_checkpoint, save_weights, unwrap_state_dict
from backbones.utils.cli import run_cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--backbone-only', action='store_true', help='write only the backbone, without "backbone."')
    p.add_argument('--arch', help='check the weights load strictly into this variant: '
                   + ', '.join(InceptionNeXt.arch_settings))
    args = p.parse_args(argv)
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

"""Convert InceptionNeXt weights into the layouts our configs load.

    # official release / timm checkpoint -> our classifier layout (backbone.* + head.*)
    python tools/convert_weights.py inceptionnext_tiny.pth inx_t_cls.pth
    # ... -> a bare backbone state dict, what the dense configs' init_cfg usually points at
    python tools/convert_weights.py inceptionnext_tiny.pth inx_t_backbone.pth --backbone-only
    # check that it fits a variant before writing (builds the model and loads it strictly)
    python tools/convert_weights.py inceptionnext_tiny.pth inx_t_backbone.pth --backbone-only --arch tiny

Input wrappers (``state_dict`` / ``model`` / ``module.``) are stripped; unknown keys, shape mismatches
and unreadable files are errors that name the problem. The output is a plain tensor dict, readable with
torch.load(weights_only=True).
"""
import argparse

from backbones import InceptionNeXt, classifier_state_dict, extract_backbone, load_backbone_weights
from backbones.cli import run_cli
from backbones.weights import save_weights


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--backbone-only', action='store_true', help='write only the backbone, without "backbone."')
    p.add_argument('--arch', help='check the weights load strictly into this variant (atto/tiny/small/base ...)')
    args = p.parse_args(argv)
    sd = classifier_state_dict(args.src)
    if args.arch:  # strict fit check against the named variant
        load_backbone_weights(InceptionNeXt(args.arch), sd)
    if args.backbone_only:
        sd = extract_backbone(sd)
    save_weights(sd, args.dst)
    n = sum(v.numel() for v in sd.values())
    print(f'wrote {args.dst}: {len(sd)} tensors, {n / 1e6:.2f}M values'
          + (f', fits InceptionNeXt-{args.arch}' if args.arch else ''))
    return 0


if __name__ == '__main__':
    run_cli(main)

"""Params and FLOPs of mmdet detectors built from this repo's configs (backbone + neck + heads).

    python tools/flops_det.py                                   # Mask R-CNN T / S / B at 1280x800
    python tools/flops_det.py configs/cascade-mask-rcnn_inceptionnext-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py
    python tools/flops_det.py CONFIG [CONFIG ...] --shape 1333 800 [--proposals 1000]

Counted like the detection tables of ConvNeXt / Swin / mmdet's ``get_flops`` (mmengine.analysis, the fvcore
counter: one multiply-add = one FLOP; convolutions, linear layers and norms counted, element-wise ops,
RoIAlign and NMS not): one (3, H, W) image through backbone, neck and RPN head, and for two-stage
detectors the RoI heads on a fixed set of ``--proposals`` boxes (1000, mmdet's test-time RPN output), with
the mask head on the first 100 of them, as mmdet's ``forward_dummy`` did. ``tools/flops.py``'s
``count_config`` calls ``model._forward(x)``, which a two-stage detector cannot run without data samples;
this tool builds its own tensor-only forward. No checkpoint or data is needed (the backbone is not
initialised, SyncBN becomes BN).
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import torch  # noqa: E402

try:
    from .flops import count  # noqa: E402
except ImportError:
    from flops import count  # noqa: E402

DEFAULT_CONFIGS = [f'configs/mask-rcnn_inceptionnext-{v}_fpn_1x_coco.py' for v in 'tsb']


def build_detector(config: str, options=None) -> torch.nn.Module:
    """The detector of an mmdet config, on CPU, in eval mode, without loading pretrained weights."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import mmdet.utils
    from backbones.engine import fallback_syncbn_on_cpu, merge_cfg_options
    from mmdet.registry import MODELS
    if not osp.isfile(config):
        print(f'error: config file not found: {config}', file=sys.stderr)
        sys.exit(2)
    cfg = Config.fromfile(config)
    merge_cfg_options(cfg, options)
    if cfg.get('default_scope') != 'mmdet':
        print(f'error: {config} is not an mmdet config (default_scope={cfg.get("default_scope")!r})',
              file=sys.stderr)
        sys.exit(2)
    fallback_syncbn_on_cpu(cfg)
    cfg.model.backbone.init_cfg = None
    mmdet.utils.register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model).eval()


def fixed_proposals(num: int, width: int, height: int, seed: int = 0) -> torch.Tensor:
    """``num`` reproducible boxes (x1, y1, x2, y2) of 8..512 pixels inside a width x height image."""
    g = torch.Generator().manual_seed(seed)
    wh = 8 * 64 ** torch.rand(num, 2, generator=g)  # log-uniform sizes, as real proposals are spread
    wh = torch.minimum(wh, torch.tensor([width - 1., height - 1.]))
    xy = torch.rand(num, 2, generator=g) * (torch.tensor([width, height]) - wh)
    return torch.cat([xy, xy + wh], 1)


class DetectorTensorForward(torch.nn.Module):
    """A tensor-in, tensors-out forward of an mmdet detector over every part that the tables count."""

    def __init__(self, model: torch.nn.Module, width: int, height: int, num_proposals: int = 1000):
        super().__init__()
        self.model = model
        self.proposals = fixed_proposals(num_proposals, width, height)

    def forward(self, x: torch.Tensor):
        from mmengine.structures import InstanceData
        model = self.model
        feats = model.extract_feat(x)
        if hasattr(model, 'roi_head'):  # two-stage: RPN head + RoI heads on fixed proposals
            outs = model.rpn_head(feats)
            proposals = [InstanceData(bboxes=self.proposals.to(x.device))]
            outs = outs + tuple(model.roi_head.forward(feats, proposals))
        else:  # single-stage: the dense head
            outs = model.bbox_head(feats)
        return _flatten(outs)


def _flatten(obj):
    if isinstance(obj, torch.Tensor):
        return (obj,)
    if isinstance(obj, (list, tuple)):
        return tuple(t for o in obj for t in _flatten(o))
    if isinstance(obj, dict):
        return tuple(t for o in obj.values() for t in _flatten(o))
    return ()


def count_detector(config: str, width: int = 1280, height: int = 800, num_proposals: int = 1000,
                   options=None) -> dict:
    """{'params', 'flops', 'backbone_params', 'backbone_flops'} of one config at width x height."""
    model = build_detector(config, options)
    x = torch.zeros(1, 3, height, width)
    params, flops = count(DetectorTensorForward(model, width, height, num_proposals), x)
    bb_params, bb_flops = count(model.backbone, x)
    return dict(params=params, flops=flops, backbone_params=bb_params, backbone_flops=bb_flops)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='*', help='mmdet configs (default: Mask R-CNN T, S, B 1x)')
    p.add_argument('--shape', type=int, nargs=2, default=(1280, 800), metavar=('W', 'H'))
    p.add_argument('--proposals', type=int, default=1000, help='RoIs given to the RoI heads (mask head: 100)')
    args = p.parse_args(argv)
    configs = args.configs or [osp.join(REPO, c) for c in DEFAULT_CONFIGS]
    w, h = args.shape
    name_w = max(len(osp.splitext(osp.basename(c))[0]) for c in configs)
    print(f'params and FLOPs (multiply-adds, mmengine.analysis) at {w}x{h}, {args.proposals} proposals')
    print(f'{"config":<{name_w}}  {"params (M)":>10}  {"FLOPs (G)":>9}  {"backbone params (M)":>19}  '
          f'{"backbone FLOPs (G)":>18}')
    for c in configs:
        r = count_detector(c, w, h, args.proposals)
        name = osp.splitext(osp.basename(c))[0]
        print(f'{name:<{name_w}}  {r["params"] / 1e6:>10.2f}  {r["flops"] / 1e9:>9.1f}  '
              f'{r["backbone_params"] / 1e6:>19.2f}  {r["backbone_flops"] / 1e9:>18.1f}', flush=True)


if __name__ == '__main__':
    main()

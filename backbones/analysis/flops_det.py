"""Params and FLOPs of mmdet detectors built from this repo's configs (backbone + neck + heads).

    python tools/analysis_tools/flops_det.py                                   # Mask R-CNN T / S / B at 1280x800
    python tools/analysis_tools/flops_det.py \
        configs/cascade-mask-rcnn_inceptionnext-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py
    python tools/analysis_tools/flops_det.py CONFIG [CONFIG ...] --shape 1333 800 [--proposals 1000]

Counted like the detection tables of ConvNeXt / Swin / mmdet's ``get_flops`` (mmengine.analysis, the fvcore
counter: one multiply-add = one FLOP; convolutions, linear layers and norms counted, element-wise ops,
RoIAlign and NMS not): one (3, H, W) image through backbone, neck and RPN head, and for two-stage
detectors the RoI heads on a fixed set of ``--proposals`` boxes (1000, mmdet's test-time RPN output), with
the mask head on the first 100 of them, as mmdet's ``forward_dummy`` did. ``backbones.analysis.flops``'s
``count_config`` calls ``model._forward(x)``, which a two-stage detector cannot run without data samples;
this tool builds its own tensor-only forward. No checkpoint or data is needed (the backbone is not
initialised, SyncBN becomes BN).
"""
import torch

from backbones.analysis.flops import count

DEFAULT_CONFIGS = [f'configs/mask-rcnn_inceptionnext-{v}_fpn_1x_coco.py' for v in 'tsb']


def build_detector(config, options=None) -> torch.nn.Module:
    """The detector of an mmdet config, on CPU, in eval mode, without loading pretrained weights."""
    from backbones.apis.build import build_model
    return build_model(config, options, scope='mmdet')


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

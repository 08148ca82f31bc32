"""Params and FLOPs of the Mask R-CNN configs at 1280x800 (tools/analysis_tools/flops_det.py, mmengine.analysis).

Measured here (printed by ``python tools/analysis_tools/flops_det.py``): Mask R-CNN T 44.25M / 256.6G,
S 65.57M / 341.7G, B 100.84M / 475.0G (1000 proposals, mask head on 100). ConvNeXt-T's Mask R-CNN row reads
48M / 262G; our T is 4M smaller because InceptionNeXt-T's 28M include a 4.1M MLP classifier head that detection drops
(ConvNeXt's linear head is 0.8M), and the neck and heads here are the same ~20.3M.
"""
import os.path as osp
import re

import pytest

from backbones.analysis.flops_det import build_detector
from tests.helpers import REPO
from tests.helpers.tool import tool

pytestmark = pytest.mark.slow  # the FLOP count of Mask R-CNN T at 1280x800

CFG = osp.join(REPO, 'configs', 'mask-rcnn_inceptionnext-{}_fpn_1x_coco.py')


@pytest.fixture(scope='module')
def tiny():
    """The FLOPs command's table row for Mask R-CNN T (S and B are default rows too: ~1 min each here)."""
    out = tool('tools/analysis_tools/flops_det.py', CFG.format('t'), '--shape', '1280', '800').stdout
    print(out)
    assert 'at 1280x800, 1000 proposals' in out
    row = re.search(r'^mask-rcnn_inceptionnext-t_fpn_1x_coco +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$', out, re.M)
    assert row, out
    params, flops, bb_params, bb_flops = map(float, row.groups())
    return dict(params=params * 1e6, flops=flops * 1e9, backbone_params=bb_params * 1e6,
                backbone_flops=bb_flops * 1e9)


def test_mask_rcnn_t_params_and_flops(tiny):
    assert 43.0e6 <= tiny['params'] <= 46.0e6  # 44.25M
    assert 23.9e6 <= tiny['backbone_params'] <= 24.1e6  # 28.06M classifier minus its 4.08M MLP head
    assert 240e9 <= tiny['flops'] <= 275e9  # 256.6G; ConvNeXt-T's Mask R-CNN: 262G
    assert 80e9 <= tiny['backbone_flops'] <= 90e9  # 4.19G at 224 scaled by (1280 * 800) / 224 ** 2 = 20.4x


def test_s_and_b_params_and_same_heads(tiny):
    heads = tiny['params'] - tiny['backbone_params']  # as printed: to 0.01M
    params = {}
    for v in 'sb':
        model = build_detector(CFG.format(v))
        total = sum(p.numel() for p in model.parameters())
        backbone = sum(p.numel() for p in model.backbone.parameters())
        params[v] = total
        head_delta = (total - backbone) - heads  # B's wider stages only widen the FPN's lateral convs
        assert abs(head_delta) < (0.02e6 if v == 's' else 0.2e6), (v, head_delta)  # B: +0.12M
    assert 64.0e6 <= params['s'] <= 67.0e6 and 99.0e6 <= params['b'] <= 103.0e6  # 65.57M, 100.84M


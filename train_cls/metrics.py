"""Top-k accuracy over the val / test set (what timm's validate.py and the paper report)."""
from typing import Dict, List, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from backbones.utils.errors import BadValueError, DatasetError

from .registry import METRICS


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent: ``accuracy/top1``, ``accuracy/top5``.

    A sample counts for top-k when its true class is among the k best scores. Ties are broken towards
    the lower class index (as ``argmax`` does), so a constant or NaN score scores chance, never 100%.
    """

    default_prefix = 'accuracy'

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = 'cpu', prefix: str = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise BadValueError(f'topk must be positive integers, got {topk}')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            score, gt = s['pred_score'], int(s['gt_label'])
            score = torch.as_tensor(score).float().flatten()
            if not 0 <= gt < score.numel():
                raise DatasetError(f'label {gt} outside the {score.numel()} classes of the model '
                                   f'({s.get("img_path")})')
            ref = score[gt]
            if not torch.isfinite(ref):
                rank = score.numel()
            else:  # position of the true class in a descending sort that keeps lower indices first
                idx = torch.arange(score.numel(), device=score.device)
                rank = int((score > ref).sum() + ((score == ref) & (idx < gt)).sum())
            self.results.append(rank)

    def compute_metrics(self, results: List[int]) -> Dict[str, float]:
        ranks = np.asarray(results)
        return {f'top{k}': float((ranks < k).mean() * 100) for k in self.topk}

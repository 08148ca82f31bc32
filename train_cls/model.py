"""The ImageNet classifier (InceptionNeXt backbone + MlpHead) and its batch-wise data preprocessor.

State-dict layout: ``backbone.*`` and ``head.*``, exactly what ``backbones.models.weights.convert_timm_state_dict``
makes of an official / timm checkpoint (the preprocessor's mean/std buffers are not saved), so
converted weights load and evaluate as they are, and a trained checkpoint feeds the dense configs
through ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` or
``tools/model_converters/extract_backbone.py``.
"""
from collections.abc import Mapping
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel

import backbones  # noqa: F401  (registers InceptionNeXt in the root MODELS registry)
from backbones.models.inceptionnext import MlpHead, load_classifier_weights  # noqa: F401 (re-exported)
from backbones.utils.errors import BadValueError

from .registry import MODELS
from .transforms import IMAGENET_MEAN, IMAGENET_STD

MODELS.register_module(module=MlpHead)


@MODELS.register_module()
class ClsDataPreprocessor(BaseDataPreprocessor):
    """uint8 image batch -> normalised float batch; in training also random erasing and mixup/cutmix.

    The order is timm's (its prefetcher and ``FastCollateMixup``): normalise, erase (noise in the
    normalised space), then mix. Outputs ``dict(inputs, data_samples=dict(gt_label, gt_score, metas))``;
    ``gt_score`` holds the soft targets of mixup/cutmix (label smoothing included), else ``None``.

    Args:
        mean, std: per-channel, on the 0..255 scale (ImageNet's by default).
        random_erasing: kwargs of ``timm.data.RandomErasing`` (``probability``, ``mode``, ``max_count``,
            ...), or ``None``. Applied per image, in training only.
        mixup: kwargs of ``timm.data.Mixup`` (``mixup_alpha``, ``cutmix_alpha``, ``label_smoothing``,
            ``prob``, ``switch_prob``, ``mode``) without ``num_classes`` (the classifier sets it), or
            ``None``. Needs an even per-process batch (timm mixes each image with the flipped batch).
        num_classes: only needed when the preprocessor is used without the classifier.
    """

    def __init__(self, mean: Sequence[float] = tuple(255 * m for m in IMAGENET_MEAN),
                 std: Sequence[float] = tuple(255 * s for s in IMAGENET_STD),
                 random_erasing: Optional[dict] = None, mixup: Optional[dict] = None,
                 num_classes: Optional[int] = None, non_blocking: bool = False):
        super().__init__(non_blocking)
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.random_erasing_cfg = dict(random_erasing) if random_erasing else None
        self.mixup_cfg = dict(mixup) if mixup else None
        if self.mixup_cfg and 'num_classes' in self.mixup_cfg:
            raise BadValueError('ClsDataPreprocessor.mixup: leave num_classes out, the classifier head sets '
                                'it')
        self._mixup = None
        self.num_classes = num_classes

    @property
    def num_classes(self) -> Optional[int]:
        return self._num_classes

    @num_classes.setter
    def num_classes(self, n: Optional[int]) -> None:
        from timm.data import Mixup
        self._num_classes = n
        self._mixup = Mixup(**self.mixup_cfg, num_classes=n) if self.mixup_cfg and n else None

    @property
    def mixup(self):
        """The ``timm.data.Mixup`` in use (``None`` when mixup/cutmix are off)."""
        return self._mixup

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            shapes = {tuple(t.shape) for t in inputs}
            if len(shapes) > 1:
                raise BadValueError(f'images of one batch differ in size {sorted(shapes)}: the pipeline '
                                    'must crop to a fixed input_size')
            inputs = torch.stack(list(inputs))
        x = inputs.to(self.device, non_blocking=self._non_blocking).float()
        x = (x - self.mean) / self.std
        metas = _per_sample(data.get('data_samples'))
        labels = torch.as_tensor([int(m['gt_label']) for m in metas], dtype=torch.long, device=x.device) \
            if metas else None
        scores = None
        if training:
            if self.random_erasing_cfg:
                from timm.data.random_erasing import RandomErasing
                x = RandomErasing(**self.random_erasing_cfg, device=x.device)(x)
            if self.mixup_cfg:
                if self._mixup is None:
                    raise RuntimeError('mixup is configured but num_classes is unknown')
                if len(x) % 2:
                    raise BadValueError(f'mixup/cutmix need an even batch per process, got {len(x)}: set an '
                                        'even train_dataloader.batch_size and keep drop_last=True')
                x, scores = self._mixup(x, labels)
        return dict(inputs=x, data_samples=dict(gt_label=labels, gt_score=scores, metas=metas))


def _per_sample(samples) -> List[dict]:
    """Per-sample dicts from the collated ``data_samples`` (``pseudo_collate`` turns the per-sample dicts
    into one dict of lists; a plain list of dicts passes through)."""
    if not samples:
        return []
    if isinstance(samples, Mapping):
        keys = list(samples)
        return [{k: samples[k][i] for k in keys} for i in range(len(samples[keys[0]]))]
    return list(samples)


@MODELS.register_module()
class InceptionNeXtClassifier(BaseModel):
    """InceptionNeXt backbone -> ``MlpHead`` -> logits; an MMEngine model with loss / predict / tensor modes.

    Args:
        backbone: ``InceptionNeXt`` config (``out_indices`` defaults to the last stage only).
        head: ``MlpHead`` config; ``in_channels`` and ``mlp_ratio`` default to the backbone's
            (``backbone.head_mlp_ratio``: 3 for InceptionNeXt, 0 for the ConvNeXt-style ablations).
        label_smoothing: for the hard-label loss, used when mixup/cutmix are off (with them the smoothing
            is part of the mixed targets: ``data_preprocessor.mixup.label_smoothing``).
        data_preprocessor: ``ClsDataPreprocessor`` config.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads a whole classifier (ours, converted, or
            an official / timm file) strictly -- how the 384 fine-tune starts from 224 weights.
    """

    def __init__(self, backbone: dict, head: dict = dict(type='MlpHead', num_classes=1000),
                 label_smoothing: float = 0.1, data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ClsDataPreprocessor')
        if isinstance(data_preprocessor, dict):  # our registry, so that it builds outside a Runner too
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        backbone = dict(backbone)
        backbone.setdefault('out_indices', (3,))
        self.backbone = MODELS.build(backbone)
        head = dict(head)
        head.setdefault('type', 'MlpHead')
        head.setdefault('in_channels', self.backbone.dims[-1])
        head.setdefault('mlp_ratio', self.backbone.head_mlp_ratio)
        self.head = MODELS.build(head)
        self.num_classes = self.head.fc2.out_features
        if hasattr(self.data_preprocessor, 'num_classes'):
            self.data_preprocessor.num_classes = self.num_classes
        self.label_smoothing = label_smoothing

    # ----------------------------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, data_samples: Optional[dict] = None, mode: str = 'tensor'):
        if mode == 'tensor':
            return self.head(self.backbone(inputs)[-1])
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise ValueError(f'mode must be "tensor", "loss" or "predict", got {mode!r}')

    def loss(self, inputs: torch.Tensor, data_samples: dict) -> Dict[str, torch.Tensor]:
        logits = self(inputs, mode='tensor')
        scores = data_samples.get('gt_score')
        if scores is not None:  # mixup/cutmix targets: timm's SoftTargetCrossEntropy
            from timm.loss import SoftTargetCrossEntropy
            loss = SoftTargetCrossEntropy()(logits, scores)
        elif self.label_smoothing > 0:
            from timm.loss import LabelSmoothingCrossEntropy
            loss = LabelSmoothingCrossEntropy(self.label_smoothing)(logits, data_samples['gt_label'])
        else:
            loss = F.cross_entropy(logits, data_samples['gt_label'])
        return dict(loss=loss)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples: Optional[dict] = None) -> List[dict]:
        scores = self(inputs, mode='tensor').float().softmax(-1)
        metas = (data_samples or {}).get('metas') or [{} for _ in range(len(scores))]
        out = []
        for score, meta in zip(scores, metas):
            out.append(dict(meta, pred_score=score, pred_label=int(score.argmax())))
        return out

    # ----------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_classifier_weights(self, cfg['checkpoint'])
            self._is_init = True
        else:
            super().init_weights()



"""Building a model from a config of this repo (classification, mmdet, mmseg) outside a Runner: for the
FLOP counter, the benchmark, the exporters, the demos and the tests."""
import importlib
from typing import Optional

import torch

from backbones.utils.errors import CheckpointError, UserInputError


def build_model(config, options: Optional[dict] = None, pretrained: bool = False,
                scope: Optional[str] = None) -> torch.nn.Module:
    """The model of ``config`` (a path or an MMEngine ``Config``), on CPU, in eval mode.

    ``options``: ``--cfg-options``-style overrides (a key the config lacks must be one its class takes).
    ``pretrained=False`` skips the backbone's ``init_cfg`` (no checkpoint needed). ``scope`` (``'mmdet'``,
    ``'mmseg'``, ``'train_cls'``): the config must be of that task. Without a GPU, SyncBN becomes BN. The model
    is built under the config's ``default_scope``, whose registries are imported first.
    """
    from mmengine.config import Config

    from backbones.engine.mmengine_fixes import fallback_syncbn_on_cpu
    from backbones.utils.config import check_added_keys, load_config, merge_cfg_options
    if isinstance(config, Config):
        cfg = config.copy()
        check_added_keys(cfg, merge_cfg_options(cfg, options))
        name = cfg.filename or 'the config'
    else:
        cfg, name = load_config(config, options), config
    default_scope = cfg.get('default_scope')
    if scope is not None and default_scope != scope:
        raise UserInputError(f'{name} is not an {scope} config (default_scope={default_scope!r})')
    fallback_syncbn_on_cpu(cfg)
    if not pretrained and isinstance(cfg.model.get('backbone'), dict):
        cfg.model.backbone.init_cfg = None
    return build_in_scope(cfg, cfg.model).eval()


def build_in_scope(cfg, model_cfg) -> torch.nn.Module:
    """``model_cfg`` built by MMEngine's registries under ``cfg``'s ``default_scope``, after its
    ``custom_imports`` and the scope's model registrations are imported."""
    from mmengine.registry import MODELS, DefaultScope
    default_scope = cfg.get('default_scope')
    for module in (cfg.get('custom_imports') or {}).get('imports', []):
        importlib.import_module(module)
    if default_scope in ('mmdet', 'mmseg', 'train_cls'):  # their models register on import
        importlib.import_module(f'{default_scope}.models' if default_scope != 'train_cls' else 'train_cls')
    with DefaultScope.overwrite_default_scope(default_scope):
        return MODELS.build(model_cfg)

class ImageClassifier(torch.nn.Module):
    """InceptionNeXt + its head as a plain module: (N, 3, H, W) -> (N, num_classes) logits.

    The network the paper's tables count and time (``train_cls.InceptionNeXtClassifier`` is the same
    network with MMEngine's data handling and losses)."""

    def __init__(self, arch: str, num_classes: int = 1000, **backbone_kwargs):
        super().__init__()
        from backbones.models.inceptionnext import InceptionNeXt, MlpHead
        self.backbone = InceptionNeXt(arch, out_indices=(3,), **backbone_kwargs)
        self.head = MlpHead(self.backbone.dims[-1], num_classes, mlp_ratio=self.backbone.head_mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1])


def classifier(arch: str, num_classes: int = 1000) -> torch.nn.Module:
    """``ImageClassifier(arch)`` in eval mode."""
    return ImageClassifier(arch, num_classes).eval()


def check_weights_fit(arch: str, weights) -> None:
    """``weights`` (any layout ``weights.identify`` knows) load strictly into ``arch``'s backbone, and into
    its classifier head when they have one; the errors name the layout, what the file holds and the arches
    that fit it."""
    from backbones.models.inceptionnext import InceptionNeXt, MlpHead, explain, load_backbone_weights
    from backbones.models.weights import identify, state_dict_mismatch
    layout, sd = identify(weights)
    try:
        model = InceptionNeXt(arch)
    except ValueError as e:
        raise UserInputError(f'--arch: {e}. {explain(layout, sd)}') from None
    load_backbone_weights(model, weights)
    head = {k[len('head.'):]: v for k, v in sd.items() if k.startswith('head.')}
    if 'fc2.weight' in head:  # our MlpHead (other heads: the backbone is what the configs load)
        own = MlpHead(model.dims[-1], sd['head.fc2.weight'].shape[0], model.head_mlp_ratio).state_dict()
        problems = state_dict_mismatch(own, head)
        if problems:
            raise CheckpointError(f'the classifier head does not fit arch {arch}: {problems}. '
                                  f'{explain(layout, sd)}')

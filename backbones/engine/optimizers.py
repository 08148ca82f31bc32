"""Layer-wise / stage-wise learning-rate decay for InceptionNeXt, shared by the mmseg and mmdet configs.

mmseg's and mmdet's ``LearningRateDecayOptimizerConstructor`` only recognise backbones whose class name
contains "ConvNeXt" (and mmpretrain's parameter names), so ours asks the backbone for each parameter's
depth (``InceptionNeXt.get_layer_depth``, as mmpretrain's backbones answer it) and reproduces the ConvNeXt
recipes' rule exactly:

    optim_wrapper = dict(constructor='InceptionNeXtLayerDecayConstructor',
                         paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6), ...)

``stage_wise``: stem and downsamples -> 0, stage i -> i + 1, everything else (out norms, neck, heads)
-> num_layers + 1. ``layer_wise``: stem 0; stage 0 -> 1; stage 1 (and its downsample) -> 2; stage 2 block
j -> 3 + j // 3 (its downsample 3); stage 3 -> num_layers; the rest num_layers + 1. A group's lr is
``base_lr * decay_rate ** (num_layers + 1 - id)``; 1-D parameters and biases get no weight decay.
"""
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from backbones.utils.errors import BadValueError


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class InceptionNeXtLayerDecayConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups with decayed learning rates by depth in an InceptionNeXt backbone."""

    def add_params(self, params, module, **kwargs):
        cfg = self.paramwise_cfg
        missing = [k for k in ('num_layers', 'decay_rate') if k not in cfg]
        if missing:
            raise BadValueError(f'InceptionNeXtLayerDecayConstructor: optim_wrapper.paramwise_cfg has no '
                                f'{" and no ".join(missing)} (e.g. paramwise_cfg=dict(decay_rate=0.9, '
                                "decay_type='stage_wise', num_layers=6))")
        num_layers, rate = cfg['num_layers'], cfg['decay_rate']
        decay_type = cfg.get('decay_type', 'layer_wise')
        if decay_type not in ('layer_wise', 'stage_wise'):
            raise BadValueError(f'optim_wrapper.paramwise_cfg.decay_type={decay_type!r}: use '
                                "'layer_wise' or 'stage_wise'")
        backbone = getattr(module, 'backbone', None)
        if not hasattr(backbone, 'get_layer_depth'):
            raise BadValueError('InceptionNeXtLayerDecayConstructor needs a model with an InceptionNeXt '
                                f'`backbone` (this {type(module).__name__} has none with get_layer_depth)')
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            no_decay = param.ndim == 1 or name.endswith('.bias')
            lid, _ = backbone.get_layer_depth(name, 'backbone.', num_layers, decay_type)
            key = f'layer_{lid}_{"no_decay" if no_decay else "decay"}'
            if key not in groups:
                scale = rate ** (num_layers + 1 - lid)
                groups[key] = dict(params=[], param_names=[], lr_scale=scale, lr=scale * self.base_lr,
                                   weight_decay=0. if no_decay else self.base_wd, group_name=key)
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        if get_dist_info()[0] == 0:
            summary = ', '.join(f'{k}: {len(g["params"])} params lr x{g["lr_scale"]:.3f}'
                                for k, g in sorted(groups.items()))
            print_log(f'layer decay ({decay_type}, rate {rate}, {num_layers} layers): {summary}', logger='current')
        params.extend(groups.values())

"""Per-image transforms: PIL loading, timm's ImageNet augmentation, packing for the data preprocessor.

The augmentation is ``timm.data.create_transform`` itself in timm's "prefetcher" form (what the official
training script runs): RandomResizedCrop + flip + RandAugment (train) or resize + centre crop
(eval) on the PIL image, ending in a uint8 CHW tensor. Normalisation, random erasing and
mixup/cutmix run batch-wise in ``ClsDataPreprocessor`` (on the GPU when there is one), in that order,
as timm's prefetcher does.

timm's posterize ops keep ``4 - int(m * 0.4)`` bits, 0 at magnitude 10 (reachable with ``mstd`` > 0): "keep no
bit", a black image. Pillow >= 13 refuses 0 bits, so ``TimmTransform`` gives those ops a posterize that
returns the black image for 0 bits and calls Pillow for 1-7 (``guard_posterize``).
"""
from typing import Optional, Sequence, Tuple, Union

import torch
from PIL import Image, ImageOps

from backbones.utils.errors import BadValueError

from .datasets import UnreadableImageError
from .registry import TRANSFORMS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@TRANSFORMS.register_module()
class LoadImagePIL:
    """``results['img_path']`` -> ``results['img']``, an RGB PIL image (as timm's ImageFolder reads)."""

    def __call__(self, results: dict) -> dict:
        path = results['img_path']
        try:
            with open(path, 'rb') as f:
                img = Image.open(f)
                img = img.convert('RGB')  # decodes the whole file: truncation shows up here
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
            raise UnreadableImageError(f'cannot read image {path}: {type(e).__name__}: {e}') from None
        results['img'] = img
        return results


def posterize_keep_bits(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize op over the whole range its levels give: 8 bits or more keep the image, 1-7 go to
    Pillow, 0 (magnitude 10 of ``PosterizeIncreasing`` / ``Posterize``) keeps no bit: an all-zero image."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _augment_ops(t) -> list:
    """timm's ``AugmentOp`` objects inside an auto-augment transform (RandAugment / AugMix ``ops``,
    AutoAugment ``policy``, a list of sub-policies)."""
    found = []
    stack = [getattr(t, 'ops', None), getattr(t, 'policy', None)]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif item is not None and hasattr(item, 'aug_fn') and hasattr(item, 'level_fn'):
            found.append(item)
    return found


def guard_posterize(transform) -> int:
    """Points every timm posterize op in ``transform`` (a ``Compose`` from ``create_transform``) at
    ``posterize_keep_bits``; returns how many ops it changed."""
    from timm.data import auto_augment
    n = 0
    for t in getattr(transform, 'transforms', [transform]):
        for op in _augment_ops(t):
            if op.aug_fn is auto_augment.posterize:
                op.aug_fn = posterize_keep_bits
                n += 1
    return n


@TRANSFORMS.register_module()
class TimmTransform:
    """``timm.data.create_transform`` on ``results['img']`` (PIL) -> uint8 CHW tensor in ``results['img']``.

    Args:
        input_size: output side (or (H, W)).
        is_training: train augmentation (RandomResizedCrop, flip, auto_augment) or eval (resize + crop).
        crop_pct: eval only: the image is resized to ``input_size / crop_pct`` then centre-cropped.
        Other arguments go to ``create_transform`` unchanged (``auto_augment``, ``interpolation``,
        ``scale``, ``ratio``, ``hflip``, ``vflip``, ``color_jitter``, ``crop_mode``, ...). Random
        erasing is not here (``re_prob`` is refused): it follows normalisation, in the data preprocessor.
    """

    def __init__(self, input_size: Union[int, Tuple[int, int]] = 224, is_training: bool = False,
                 crop_pct: Optional[float] = None, interpolation: str = 'bicubic',
                 mean: Sequence[float] = IMAGENET_MEAN, **kwargs):
        from timm.data import create_transform
        if kwargs.get('re_prob'):
            raise BadValueError('TimmTransform: random erasing runs batch-wise after normalisation; set it '
                                'in model.data_preprocessor.random_erasing, not re_prob')
        for k in ('scale', 'ratio'):
            if kwargs.get(k) is not None:
                kwargs[k] = tuple(kwargs[k])
        self.is_training = is_training
        # ``mean`` only sets RandAugment's fill colour here; normalisation is the data preprocessor's.
        self.transform = create_transform(
            input_size=tuple(input_size) if isinstance(input_size, (list, tuple)) else input_size,
            is_training=is_training, crop_pct=crop_pct, interpolation=interpolation, mean=tuple(mean),
            use_prefetcher=True, **kwargs)
        guard_posterize(self.transform)

    def __call__(self, results: dict) -> dict:
        out = self.transform(results['img'])
        if not isinstance(out, torch.Tensor):  # timm returns uint8 CHW (a tensor; numpy in older timm)
            out = torch.as_tensor(out)
        results['img'] = out
        return results

    def __repr__(self) -> str:
        return f'TimmTransform({self.transform})'


@TRANSFORMS.register_module()
class PackClsInputs:
    """-> ``dict(inputs=uint8 CHW tensor, data_samples=dict(gt_label, img_path))``."""

    meta_keys = ('img_path',)

    def __call__(self, results: dict) -> dict:
        sample = {k: results[k] for k in self.meta_keys if k in results}
        sample['gt_label'] = int(results['gt_label'])
        return dict(inputs=results['img'], data_samples=sample)

"""Pipeline steps that name the bad file (registered in MMEngine's root TRANSFORMS, so mmseg and mmdet
pipelines find them).

The image loader is also the ``LoadImageFromFile`` of this package's own registry scope, ``backbones``
(``backbones.registry.TRANSFORMS``, a child of the root registry). The configs write it
``dict(type='LoadImageFromFile', _scope_='backbones')``: MMEngine builds that entry
in the ``backbones`` scope (the checked loader), while mmseg's ``MMSegInferencer`` / ``inference_model`` and
mmdet's ``DetInferencer``, which look the loader up by the type name ``LoadImageFromFile`` and swap in
their own, find it and swap it:

- ``MMSegInferencer`` sets the type to ``InferencerLoader`` (the ``_scope_`` stays): ``InferencerLoader``
  below (file paths through the checked loader, arrays as they are);
- ``mmseg.apis.inference_model`` on arrays sets ``LoadImageFromNDArray``: ``LoadImageFromNDArray`` below;
- ``DetInferencer`` sets ``mmdet.InferencerLoader`` (scoped: mmdet's own), whose file loader, built while
  the ``backbones`` scope is current, is again the checked one.
"""
from typing import Optional, Union

import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine.registry import TRANSFORMS

from backbones.datasets.checks.images import (
    PNG_SIGNATURE,
    TAIL_BYTES,
    png_bit_depth,
    sixteen_bit_error,
    sixteen_bit_values,
    warn_sixteen_bit,
)
from backbones.registry import TRANSFORMS as SCOPED_TRANSFORMS
from backbones.utils.errors import AnnotationError, DatasetError
from backbones.utils.io import error_line


@SCOPED_TRANSFORMS.register_module(name='LoadImageFromFile')
@TRANSFORMS.register_module()
class LoadImageFromFileChecked(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments) whose failures raise ``DatasetError`` naming the file.

    mmcv's own raises OpenCV's "!buf.empty()" assertion for a 0-byte file, an ``AssertionError`` for a
    truncated one, a ``FileNotFoundError`` for a missing one; in a dataloader worker that is a traceback, and
    for the empty file no name at all.
    """

    def transform(self, results: dict) -> Optional[dict]:
        import mmcv
        from mmengine import fileio
        filename = results['img_path']
        try:
            if self.file_client_args is not None:
                img_bytes = fileio.FileClient.infer_client(self.file_client_args, filename).get(filename)
            else:
                img_bytes = fileio.get(filename, backend_args=self.backend_args)
        except FileNotFoundError:
            if self.ignore_empty:
                return None
            raise DatasetError(f'image file not found: {filename}') from None
        img, why = None, None
        if not img_bytes:
            why = 'empty file (0 bytes)'
        else:
            try:
                img = mmcv.imfrombytes(img_bytes, flag=self.color_type, backend=self.imdecode_backend)
            except Exception as e:  # noqa: BLE001 (a decoder's failure, whatever its type)
                why = f'{type(e).__name__}: {error_line(e)}'
            if img is None:
                end = img_bytes[-TAIL_BYTES:]
                truncated = (img_bytes[:2] == b'\xff\xd8' and b'\xff\xd9' not in end) or (
                    img_bytes[:8] == PNG_SIGNATURE and b'IEND' not in end)
                why = ('truncated (no end marker)' if truncated else 'not a decodable image') + (
                    f': {why}' if why else '')
        if why:
            if self.ignore_empty:
                return None
            raise DatasetError(f'{filename}: cannot load the image: {why}')
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


@SCOPED_TRANSFORMS.register_module()
class LoadImageFromNDArray(LoadImageFromFile):
    """An image given as an array (``results['img']``, HWC, BGR as OpenCV reads): what mmseg's / mmdet's
    ``LoadImageFromNDArray`` do (``img_path`` None, ``img_shape`` / ``ori_shape`` set; ``to_float32``)."""

    def transform(self, results: dict) -> dict:
        img = results['img']
        if self.to_float32:
            img = img.astype(np.float32)
        results['img_path'] = None
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


@SCOPED_TRANSFORMS.register_module()
class InferencerLoader(BaseTransform):
    """An inferencer's input, a file path, an array or a dict: paths through the checked loader, arrays
    as they are (``MMSegInferencer`` swaps the config's loader for this one; same arguments)."""

    def __init__(self, **kwargs):
        super().__init__()
        self.from_file = LoadImageFromFileChecked(**kwargs)
        self.from_ndarray = LoadImageFromNDArray(**kwargs)

    def transform(self, results: Union[str, np.ndarray, dict]) -> dict:
        if isinstance(results, str):
            results = dict(img_path=results)
        elif isinstance(results, np.ndarray):
            results = dict(img=results)
        elif not isinstance(results, dict):
            raise TypeError(f'an inferencer input is a file path, an array or a dict, not a {type(results).__name__}')
        return self.from_ndarray(results) if 'img' in results else self.from_file(results)


@TRANSFORMS.register_module()
class CheckSegMap(BaseTransform):
    """Checks ``gt_seg_map`` (after LoadAnnotations / reduce_zero_label) against the image and classes:
    one channel, the image's size, labels in ``[0, num_classes)`` or ``ignore_index`` (range tests, about 0.03
    ms for a 683x512 map); and the file behind
    it: a 16-bit PNG with a value above 255 is an error (mmseg's 8-bit conversion turns 258 into 2), one
    whose values fit gets one warning. Registered in MMEngine's root TRANSFORMS, so mmseg pipelines find it:

        dict(type='LoadAnnotations'), dict(type='CheckSegMap', num_classes=150),

    Args:
        num_classes: labels must be in ``[0, num_classes)`` or equal ``ignore_index``.
        ignore_index: the label that losses and metrics skip (255 in mmseg).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        if 'gt_seg_map' not in results:  # inference pipelines (mmseg.apis) load no annotation
            return results
        seg = results['gt_seg_map']
        h, w = results.get('ori_shape') or results['img'].shape[:2]  # test pipelines resize before loading
        name = results.get('seg_map_path', '?')
        if seg.ndim != 2:
            raise AnnotationError(f'{name}: the annotation has {seg.shape[2]} channels (saved as a colour '
                                  'image?); a segmentation map holds one class index per pixel: a PNG of '
                                  'mode L, P or I;16')
        if seg.shape[:2] != (h, w):
            raise AnnotationError(f'{name}: annotation size {seg.shape[1]}x{seg.shape[0]} (WxH) differs from '
                                  f'its image {results.get("img_path", "?")} {w}x{h}')
        if 'seg_map_bit_depth' in results:  # LoadAnnotationsChecked read it from the bytes it decoded
            depth = results['seg_map_bit_depth']
        else:  # mmseg's LoadAnnotations: the file's header
            depth = png_bit_depth(name) if isinstance(name, str) and name.endswith('.png') else None
        if depth == 16:
            big = results.get('seg_map_above_255')
            if big is None:
                big = sixteen_bit_values(name)
            if big.size:
                raise sixteen_bit_error(name, big)
            warn_sixteen_bit(name)
        outside = self.outside(seg)
        if outside is not None:
            bad = np.unique(seg[outside])  # the error path only: the values for the message
            raise AnnotationError(f'{name}: label values {bad.tolist()} outside the {self.num_classes} classes '
                                  f'(valid: 0..{self.num_classes - 1}, ignore {self.ignore_index}; labels are '
                                  'counted after reduce_zero_label)')
        return results

    def outside(self, seg: np.ndarray) -> Optional[np.ndarray]:
        """None when every label of ``seg`` is in ``[0, num_classes)`` or ``ignore_index``, else the mask of
        those that are not. Range tests, no sort of the map as ``np.unique`` would do: for mmseg's uint8 maps
        with ignore 255 one wrapping subtraction and a min; otherwise a max (a min for signed maps), then a
        mask only when a value is at or above ``num_classes``."""
        if not seg.size:
            return None
        n = self.num_classes
        if seg.dtype == np.uint8 and self.ignore_index == 255 and 0 < n <= 255:
            # (v - n) mod 256: the classes go to 256-n..255, ignore to 255-n, the values outside to 0..254-n
            if int(np.subtract(seg, n, dtype=np.uint8).min()) >= 255 - n:
                return None
        signed = seg.dtype.kind not in 'ub'  # uint8 maps (mmseg's) have no value below 0
        if seg.max() < self.num_classes and (not signed or seg.min() >= 0):
            return None
        mask = seg >= self.num_classes
        if signed:
            mask |= seg < 0
        mask &= seg != self.ignore_index
        return mask if mask.any() else None

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})'

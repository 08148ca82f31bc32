"""Segmentation data checks: pipeline steps that name the bad file, a pre-flight check of a whole data set.

Without them, bad ADE-layout data fails late and far from the cause, in a dataloader worker whenever the file
is reached: a missing annotation, a 0-byte JPEG (an OpenCV assertion that names no file), a truncated JPEG,
an annotation saved as RGB (trains on a 3-channel map until a loss fails); or it trains on wrong labels
without a word: a 16-bit annotation PNG is converted to 8 bits by mmseg's ``LoadAnnotations`` (258 becomes
2), a head with more outputs than the data set has classes.

Pipeline steps (registered in MMEngine's root TRANSFORMS, so mmseg and mmdet pipelines find them):
  - ``LoadImageFromFileChecked``: mmcv's ``LoadImageFromFile`` whose failures (missing, empty, truncated,
    undecodable file) raise ``DatasetError`` naming the path.
  - ``CheckSegMap``: after ``LoadAnnotations``: the map is single-channel, as large as its image, its labels
    are in the classes; a 16-bit PNG with a value above 255 is an error (values that fit: one warning).

``check_seg_datasets(cfg, splits)`` reads every mmseg dataset of a config before the Runner starts (the tools
call it next to ``check_coco_datasets``):

errors (``DatasetError`` / ``AnnotationError``; the tools print one line and exit 2)
  - no image in the image folder; an image without its annotation file
  - an image or annotation file that is empty, not an image, or truncated (no JPEG end-of-image marker / no
    PNG IEND chunk, confirmed by decoding it)
  - an annotation that is not single-channel (PNG colour type RGB / RGBA / grey+alpha: mode L, P or I;16 only)
  - an annotation whose size differs from its image's decoded size (EXIF orientation applied as the
    pipeline's loader applies it)
  - a 16-bit annotation with a value above 255; label values outside the classes (on a sample, see cost)
  - a head (``decode_head`` / ``auxiliary_head``) with fewer classes than the data set
warnings (once, in the log)
  - a head with more classes than the data set (trains; the extra outputs only ever see negatives)
  - 16-bit annotations whose values fit 8 bits (read as 8 bits, as mmseg does); annotation files that no
    image uses

Cost: headers only for every pair (PIL for JPEG, the first 33 bytes for PNG, and the last kilobyte of each
file for the end marker), and a full decode of ``label_sample`` annotation PNGs spread over the set (plus
every 16-bit one) for the label range; ``labels='all'`` decodes all of them. CheckSegMap checks every map's
labels when it is loaded, so the sample only moves errors earlier. Measured figures: README (data checks).

Standalone:  python -m backbones.seg_checks CONFIG [--splits train val] [--labels all] [--cfg-options k=v ...]
"""
import logging
import os
import os.path as osp
import struct
import sys
import time
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS

if __name__ == '__main__':  # importing the package already registered this module's transforms once
    sys.exit('the data checks run from the command line as: python tools/check_data.py CONFIG')

from .checks import iter_datasets  # noqa: E402
from .errors import AnnotationError, DatasetError, UserInputError  # noqa: E402

EXIF_ORIENTATION = 0x0112
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_MODES = {0: 'L', 2: 'RGB', 3: 'P', 4: 'LA', 6: 'RGBA'}  # IHDR colour type -> PIL mode (8 bit)
SEG_MODES = ('1', 'L', 'P', 'I;16', 'I;16B', 'I')  # single-channel: class indices
TAIL_BYTES = 1024  # where a file's end marker is looked for


def _first(items, n: int = 3) -> str:
    items = list(items)
    return '; '.join(str(i) for i in items[:n]) + (f' ... ({len(items)} in all)' if len(items) > n else '')


def _last_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[-1] if text else ''


def _warn(msg: str) -> None:
    print_log(msg, logger='current', level=logging.WARNING)


# --------------------------------------------------------------------------------------------------
# Image files: headers, end markers, the size a loader decodes to (shared with coco_checks)
# --------------------------------------------------------------------------------------------------
class ImageHeader(NamedTuple):
    """What a file's header says. ``problem`` is None for a readable file, else why it cannot be used."""
    path: str
    format: Optional[str] = None      # 'JPEG', 'PNG', ...
    mode: Optional[str] = None        # PIL's mode: 'RGB', 'L', 'P', 'I;16', ...
    size: Optional[Tuple[int, int]] = None  # (width, height) of the stored pixels
    orientation: int = 1              # EXIF orientation (1: none)
    complete: bool = True             # the end marker (JPEG EOI / PNG IEND) is in the last kilobyte
    problem: Optional[str] = None


def _png_header(path: str, head: bytes) -> ImageHeader:
    width, height, depth, colour = struct.unpack('>IIBB', head[16:26])
    mode = _PNG_MODES.get(colour, f'colour type {colour}')
    if colour == 0 and depth == 16:
        mode = 'I;16'
    elif colour == 0 and depth == 1:
        mode = '1'
    elif depth == 16 and colour in (2, 4, 6):
        mode += ';16'
    return ImageHeader(path, 'PNG', mode, (width, height))


def read_image_header(path: str) -> ImageHeader:
    """The header of an image file, without decoding its pixels (~0.1 ms): format, mode, size, EXIF
    orientation, and whether the file ends with its end marker. A missing file raises FileNotFoundError."""
    size = os.stat(path).st_size
    if size == 0:
        return ImageHeader(path, problem='empty file (0 bytes)')
    with open(path, 'rb') as f:
        head = f.read(33)
        if head.startswith(_PNG_SIGNATURE) and head[12:16] == b'IHDR':
            header = _png_header(path, head)
        else:
            from PIL import Image, UnidentifiedImageError
            f.seek(0)
            try:
                im = Image.open(f)
                exif = im.getexif() if im.format in ('JPEG', 'MPO', 'WEBP', 'TIFF') else {}
                orientation = int(exif.get(EXIF_ORIENTATION, 1) or 1)
                header = ImageHeader(path, im.format, im.mode, im.size, orientation)
            except UnidentifiedImageError:
                return ImageHeader(path, problem='not an image file (unknown format)')
            except (OSError, SyntaxError, ValueError, struct.error) as e:
                return ImageHeader(path, problem=f'not a readable image ({type(e).__name__}: {e})')
        f.seek(-min(size, TAIL_BYTES), os.SEEK_END)
        tail = f.read()
    marker = {'JPEG': b'\xff\xd9', 'MPO': b'\xff\xd9', 'PNG': b'IEND'}.get(header.format)
    return header._replace(complete=marker is None or marker in tail)


def _decode_problem(path: str, backend: Optional[str], flag: str = 'color') -> Optional[str]:
    """Decodes the file as the pipeline would; None if it decodes, else why not."""
    import mmcv
    try:
        with open(path, 'rb') as f:
            img = mmcv.imfrombytes(f.read(), flag=flag, backend=backend)
    except Exception as e:  # noqa: BLE001 (any decoder failure is the answer)
        return f'does not decode ({type(e).__name__}: {_last_line(e)})'
    return None if img is not None else 'does not decode'


def unusable(header: ImageHeader, backend: Optional[str] = None, flag: str = 'color') -> Optional[str]:
    """Why a file cannot be loaded (None: it can). A file without its end marker is decoded to make sure
    (some writers append data after the marker); the rest costs nothing more than the header."""
    if header.problem:
        return header.problem
    if not header.complete:
        end = 'JPEG end-of-image marker' if header.format in ('JPEG', 'MPO') else 'PNG IEND chunk'
        why = _decode_problem(header.path, backend, flag)
        if why:
            return f'truncated (no {end}) and {why}'
    return None


def honours_exif(color_type: str = 'color', backend: Optional[str] = None) -> bool:
    """Whether mmcv's ``imfrombytes(flag=color_type, backend=backend)`` applies the EXIF orientation: cv2
    (``IMREAD_COLOR`` / ``IMREAD_GRAYSCALE`` without ``IMREAD_IGNORE_ORIENTATION``) and pillow
    (``ImageOps.exif_transpose`` for 'color' / 'grayscale') do; 'unchanged', '*_ignore_orientation',
    turbojpeg and tifffile do not."""
    import mmcv.image.io as io
    return color_type in ('color', 'grayscale') and (backend or io.imread_backend) in ('cv2', 'pillow')


def decoded_size(header: ImageHeader, exif: bool) -> Tuple[int, int]:
    """(width, height) after decoding: EXIF orientations 5-8 swap them when the loader applies EXIF."""
    w, h = header.size
    return (h, w) if exif and header.orientation in (5, 6, 7, 8) else (w, h)


def image_loader_args(pipeline) -> Tuple[str, Optional[str]]:
    """(color_type, imdecode_backend) of the pipeline's image loader (mmcv's defaults when absent)."""
    for t in pipeline or []:
        if isinstance(t, dict) and str(t.get('type', '')).split('.')[-1] in ('LoadImageFromFile',
                                                                              'LoadImageFromFileChecked'):
            return t.get('color_type', 'color'), t.get('imdecode_backend', 'cv2')
    return 'color', 'cv2'


def exif_note(header: ImageHeader, expected: Tuple[int, int], exif: bool) -> str:
    """Why the decoded size is not the stored one, if EXIF is the cause ('' otherwise)."""
    if decoded_size(header, exif) == tuple(header.size):
        return ''
    hint = ("; if the annotations are of the stored pixels, load with color_type='color_ignore_orientation'"
            if tuple(header.size) == tuple(expected) else '')
    return (f' (EXIF orientation {header.orientation} rotates the stored {header.size[0]}x{header.size[1]} '
            f'pixels when they are loaded{hint})')


def size_mismatch(header: ImageHeader, expected: Tuple[int, int], exif: bool) -> Optional[str]:
    """'annotation WxH (WxH), decoded W'xH' (EXIF ...)' if the decoded size is not ``expected``, else None."""
    got = decoded_size(header, exif)
    if tuple(got) == tuple(expected):
        return None
    return (f'{header.path}: annotation {expected[0]}x{expected[1]} (WxH), decoded {got[0]}x{got[1]}'
            + exif_note(header, expected, exif))


# --------------------------------------------------------------------------------------------------
# Pipeline steps
# --------------------------------------------------------------------------------------------------
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
                why = f'{type(e).__name__}: {_last_line(e)}'
            if img is None:
                end = img_bytes[-TAIL_BYTES:]
                truncated = (img_bytes[:2] == b'\xff\xd8' and b'\xff\xd9' not in end) or (
                    img_bytes[:8] == _PNG_SIGNATURE and b'IEND' not in end)
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


_warned = set()  # warnings given in this process (inherited by forked dataloader workers)


def png_bit_depth(path: str) -> Optional[int]:
    """A PNG's bit depth from its IHDR (the first 25 bytes); None if not a readable local PNG."""
    try:
        with open(path, 'rb') as f:
            head = f.read(26)
    except OSError:
        return None
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b'IHDR' and len(head) >= 25:
        return head[24]
    return None


def sixteen_bit_values(path: str) -> np.ndarray:
    """The values of a 16-bit annotation PNG that do not fit 8 bits (sorted, unique)."""
    from PIL import Image
    with Image.open(path) as im:
        arr = np.asarray(im)
    return np.unique(arr[arr > 255])


def _sixteen_bit_error(path: str, big: np.ndarray) -> AnnotationError:
    vals = big.tolist()
    shown = ', '.join(f'{v} (-> {v % 256})' for v in vals[:5])
    shown += f' ... ({len(vals)} values)' if len(vals) > 5 else ''
    return AnnotationError(f'{path}: a 16-bit annotation with values above 255: {shown}; mmseg reads '
                           'annotations as 8 bits, which would turn them into other classes (shown after ->)')


def warn_sixteen_bit(example: str, count: Optional[int] = None) -> None:
    if 'sixteen_bit' in _warned:
        return
    _warned.add('sixteen_bit')
    _warn(f'{count or "some"} annotation PNG(s) are 16-bit (e.g. {example}): their values all fit 8 bits, so '
          'they are read as 8-bit class indices, as mmseg\'s LoadAnnotations does (save them as 8-bit PNGs '
          'to silence this)')


@TRANSFORMS.register_module()
class CheckSegMap(BaseTransform):
    """Checks ``gt_seg_map`` (after LoadAnnotations / reduce_zero_label) against the image and classes:
    one channel, the image's size, labels in ``[0, num_classes)`` or ``ignore_index``; and the file behind
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
        if isinstance(name, str) and name.endswith('.png') and png_bit_depth(name) == 16:
            big = sixteen_bit_values(name)
            if big.size:
                raise _sixteen_bit_error(name, big)
            warn_sixteen_bit(name)
        values = np.unique(seg)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size:
            raise AnnotationError(f'{name}: label values {bad.tolist()} outside the {self.num_classes} classes '
                                  f'(valid: 0..{self.num_classes - 1}, ignore {self.ignore_index}; labels are '
                                  'counted after reduce_zero_label)')
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})'


# --------------------------------------------------------------------------------------------------
# The heads' classes against the data set's (shared with coco_checks)
# --------------------------------------------------------------------------------------------------
def head_num_classes(model: dict, paths: Sequence[str]) -> List[Tuple[str, int]]:
    """(config key, num_classes) of every head found at ``paths`` (dotted, under ``model``; a head may be a
    list, as cascade stages are). A TTA wrapper's ``module`` is looked into."""
    out = []
    if isinstance(model, dict) and isinstance(model.get('module'), dict) and not any(
            p.split('.')[0] in model for p in paths):
        model, prefix = model['module'], 'model.module'
    else:
        prefix = 'model'
    for path in paths:
        node = model
        for part in path.split('.'):
            node = node.get(part) if isinstance(node, dict) else None
        heads = [(f'{prefix}.{path}', node)] if isinstance(node, dict) else [
            (f'{prefix}.{path}.{i}', h) for i, h in enumerate(node or []) if isinstance(node, (list, tuple))]
        out += [(f'{key}.num_classes', h['num_classes']) for key, h in heads
                if isinstance(h, dict) and isinstance(h.get('num_classes'), int)]
    return out


def classes_source(ds: dict, where: str, dataset_type: str) -> str:
    if (ds.get('metainfo') or {}).get('classes') is not None:
        return f'{where}.metainfo.classes'
    return f'{dataset_type}.METAINFO'


# --------------------------------------------------------------------------------------------------
# The pre-flight check of mmseg datasets
# --------------------------------------------------------------------------------------------------
def _seg_dataset_class(cfg, ds: dict):
    t = ds.get('type')
    scope = cfg.get('default_scope')
    if isinstance(t, str) and scope != 'mmseg' and not t.startswith('mmseg.'):
        return None
    try:
        from mmseg.datasets import BaseSegDataset
        from mmseg.registry import DATASETS
    except ImportError:
        return None
    if isinstance(t, str):
        from mmengine.registry import DefaultScope
        from mmseg.utils import register_all_modules
        register_all_modules(init_default_scope=False)
        with DefaultScope.overwrite_default_scope('mmseg'):
            t = DATASETS.get(t)
    return t if isinstance(t, type) and issubclass(t, BaseSegDataset) else None


def _build_lazy(cls, ds: dict, where: str):
    args = {k: v for k, v in ds.items() if k != 'type'}
    args.update(pipeline=[], lazy_init=True)
    try:
        return cls(**args)
    except (ValueError, AssertionError, KeyError, TypeError, FileNotFoundError) as e:
        raise DatasetError(f'{where}: cannot set up {cls.__name__}: {e}') from None


def _label_errors(path: str, counts: np.ndarray, num_classes: int, ignore_index: int, reduce_zero_label: bool,
                  label_map: Optional[dict]) -> Optional[str]:
    raw = np.nonzero(counts)[0]
    labels = raw.copy()
    if reduce_zero_label:  # as mmseg's LoadAnnotations: 0 -> ignore, v -> v - 1
        labels = np.where(raw == 0, 255, raw - 1)
        labels[labels == 254] = 255
    if label_map:
        labels = np.array([label_map.get(int(v), int(v)) for v in labels], dtype=np.int64)
    bad = (labels >= num_classes) & (labels != ignore_index)
    if not bad.any():
        return None
    return (f'{path}: label values {sorted(set(labels[bad].tolist()))} outside the {num_classes} classes '
            f'(valid: 0..{num_classes - 1}, ignore {ignore_index}; PNG values {raw[bad].tolist()}'
            f'{", reduce_zero_label: v - 1" if reduce_zero_label else ""})')


def check_seg_dataset(data_list: List[dict], where: str, num_classes: Optional[int], ignore_index: int = 255,
                      color_type: str = 'color', backend: Optional[str] = 'cv2', labels: str = 'sample',
                      label_sample: int = 500, ann_dir: Optional[str] = None,
                      seg_map_suffix: str = '.png') -> dict:
    """Checks the (image, annotation) pairs of one mmseg data list (see the module doc); returns counts."""
    t0 = time.perf_counter()
    if not data_list:
        raise DatasetError('no images found (data_prefix.img_path and img_suffix)')
    exif = honours_exif(color_type, backend)
    missing, bad_img, bad_ann, channels, sizes, sixteen = [], [], [], [], [], []
    pairs = []
    for info in data_list:
        img_path, seg_path = info['img_path'], info.get('seg_map_path')
        try:
            img = read_image_header(img_path)
        except FileNotFoundError:
            missing.append(f'image {img_path}')
            continue
        why = unusable(img, backend, color_type)
        if why:
            bad_img.append(f'{img_path}: {why}')
            continue
        if seg_path is None:
            continue
        try:
            ann = read_image_header(seg_path)
        except FileNotFoundError:
            missing.append(f'annotation {seg_path} (of {img_path})')
            continue
        why = unusable(ann, 'pillow', 'unchanged')
        if why:
            bad_ann.append(f'{seg_path}: {why}')
            continue
        if ann.mode not in SEG_MODES:
            channels.append(f'{seg_path}: mode {ann.mode}')
            continue
        w, h = decoded_size(img, exif)
        if (w, h) != tuple(ann.size):  # the words of CheckSegMap's message
            sizes.append(f'{seg_path}: annotation size {ann.size[0]}x{ann.size[1]} (WxH) differs from its '
                         f'image {img_path} {w}x{h}' + exif_note(img, ann.size, exif))
            continue
        if ann.mode in ('I;16', 'I;16B', 'I'):
            sixteen.append(seg_path)
        pairs.append(info)
    n = len(data_list)
    for problems, what, cls in (
            (missing, 'files not found', DatasetError),
            (bad_img, 'images cannot be loaded', DatasetError),
            (bad_ann, 'annotations cannot be loaded', AnnotationError),
            (channels, 'annotations are not single-channel (a segmentation map is a PNG of mode L, P or '
                       'I;16: one class index per pixel, not a colour image)', AnnotationError),
            (sizes, 'annotations differ in size from their image', AnnotationError)):
        if problems:
            raise cls(f'{len(problems)} of {n} {what}: {_first(problems)}')

    if ann_dir is not None and osp.isdir(ann_dir):  # annotation files that no image uses: never read
        used = {osp.normpath(i['seg_map_path']) for i in data_list if i.get('seg_map_path')}
        unused = []
        for folder, _, files in os.walk(ann_dir):
            paths = (osp.normpath(osp.join(folder, f)) for f in files if f.endswith(seg_map_suffix))
            unused += [p for p in paths if p not in used]
        if unused:
            _warn(f'{len(unused)} annotation files without an image (not used; {where}): '
                  f'{_first(sorted(unused))}')

    # label values: decoding, so a sample (all 16-bit files, and label_sample spread over the rest)
    checked = []
    if labels != 'none' and pairs and pairs[0].get('seg_map_path') is not None:
        if labels == 'all' or len(pairs) <= label_sample:
            chosen = pairs
        else:
            step = len(pairs) / label_sample
            chosen = [pairs[int(i * step)] for i in range(label_sample)]
        extra = set(sixteen) - {i['seg_map_path'] for i in chosen}
        chosen += [i for i in pairs if i['seg_map_path'] in extra]
        if len(chosen) > 2000:
            print_log(f'{where}: checking the label values of {len(chosen)} annotations (decoding them)',
                      logger='current')
        from PIL import Image
        errors = []
        for info in chosen:
            path = info['seg_map_path']
            with Image.open(path) as im:
                arr = np.asarray(im)
            if arr.dtype != np.uint8:  # 16-bit ('I;16'), 32-bit ('I') or 1-bit ('1', bool) maps
                if arr.size and arr.max() > 255:
                    raise _sixteen_bit_error(path, np.unique(arr[arr > 255]))
                arr = arr.astype(np.uint8)
            checked.append(path)
            if num_classes is None:
                continue
            err = _label_errors(path, np.bincount(arr.ravel(), minlength=256), num_classes,
                                ignore_index, info.get('reduce_zero_label', False), info.get('label_map'))
            if err:
                errors.append(err)
        if errors:
            raise AnnotationError(f'{len(errors)} of {len(checked)} checked annotations have labels outside '
                                  f'the classes: {_first(errors)}')
    if sixteen:
        warn_sixteen_bit(sixteen[0], len(sixteen))
    return dict(images=len(data_list), annotations=len(pairs), labels_checked=len(checked),
                sixteen_bit=len(sixteen), seconds=round(time.perf_counter() - t0, 2))


def check_head_classes(heads, n_data: int, source: str) -> None:
    """Segmentation: a head with fewer classes than the data set is an error, more is one warning."""
    fewer = [(k, n) for k, n in heads if n < n_data]
    if fewer:
        low = min(n for _, n in fewer)
        labels = f'label {low}' if low == n_data - 1 else f'labels {low}..{n_data - 1}'
        raise UserInputError(f'{_first(f"{k} = {n}" for k, n in fewer)} but the data set has {n_data} '
                             f'classes ({source}): {labels} would have no output in the head (an IndexError '
                             f'in the loss); set num_classes = {n_data}')
    more = [(k, n) for k, n in heads if n > n_data]
    key = ('more_classes', tuple(more), n_data)
    if more and key not in _warned:
        _warned.add(key)
        _warn(f'{_first(f"{k} = {n}" for k, n in more)} but the data set has {n_data} classes ({source}): '
              f'trained as configured, the extra outputs ({n_data}..{max(n for _, n in more) - 1}) only ever '
              'see negatives and the metric counts the data set\'s classes; set num_classes = '
              f'{n_data} unless that is intended')


def check_seg_datasets(cfg, splits=('train_dataloader', 'val_dataloader', 'test_dataloader'),
                       labels: str = 'sample', label_sample: int = 500) -> list:
    """Runs the pre-flight checks (module doc) on every mmseg dataset of the config's dataloaders in
    ``splits``; returns (where, counts) per checked dataset. Local files only (``backend_args`` set: skipped).

    ``labels``: 'sample' (default: ``label_sample`` annotations spread over each set, and all 16-bit ones),
    'all' (decode every annotation), 'none'.
    """
    done, out = set(), []
    model = cfg.get('model') or {}
    heads = head_num_classes(model, ('decode_head', 'auxiliary_head'))
    for where, ds in iter_datasets(cfg):
        if not where.startswith(tuple(splits)) or ds.get('backend_args'):
            continue
        cls = _seg_dataset_class(cfg, ds)
        if cls is None:
            continue
        dataset = _build_lazy(cls, ds, where)
        classes = dataset.metainfo.get('classes')
        n_data = len(classes) if classes else None
        if n_data and heads:
            check_head_classes(heads, n_data, classes_source(ds, where, cls.__name__))
        num_classes = n_data or (heads[0][1] if heads else None)
        ignore = next((h.get('ignore_index', 255) for h in [model.get('decode_head')] if isinstance(h, dict)),
                      255)
        prefix = dataset.data_prefix
        key = (prefix.get('img_path'), prefix.get('seg_map_path'), dataset.ann_file, dataset.img_suffix,
               dataset.seg_map_suffix, num_classes, bool(dataset.reduce_zero_label))
        if key in done:
            continue
        done.add(key)
        color_type, backend = image_loader_args(ds.get('pipeline'))
        try:
            data_list = dataset.load_data_list()
        except (AssertionError, FileNotFoundError, OSError) as e:
            raise DatasetError(f'{where}: cannot list the data: {e}') from None
        listed = not (dataset.ann_file and osp.isfile(dataset.ann_file))
        try:
            counts = check_seg_dataset(data_list, where, num_classes,
                                       ignore_index=255 if ignore is None else ignore, color_type=color_type,
                                       backend=backend, labels=labels, label_sample=label_sample,
                                       ann_dir=prefix.get('seg_map_path') if listed else None,
                                       seg_map_suffix=dataset.seg_map_suffix)
        except UserInputError as e:
            raise type(e)(f'{e} ({where})') from None
        out.append((where, counts))
    return out

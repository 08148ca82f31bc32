"""ImageNet in its folder layout (or a file list), with the class index fixed by the train split.

    root/train/<wnid>/*.JPEG      root/val/<wnid>/*.JPEG          (class folders)
    root/meta/train.txt           "n01440764/n01440764_10026.JPEG 0" per line (file-list variant)

The class index is the position of the wnid in the sorted list of class folders, the convention of
torchvision's ``ImageFolder`` and timm (so official and timm weights score correctly). A val split maps
its folders through the *train* split's list (``classes='train'``), so it can never silently renumber
the classes; folders that train does not have are an error.

Bad input never crashes an epoch silently: missing folders, empty class folders and malformed list
lines are errors at start-up naming the problem; an unreadable image met in training is skipped with a
warning (MMEngine then draws another sample), in val/test it is an error naming the file.
"""
import os
import os.path as osp
import warnings
from typing import List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset, Compose
from mmengine.logging import print_log

from backbones.utils.errors import DatasetError
from backbones.utils.io import names

from .registry import DATASETS, TRANSFORMS

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


class UnreadableImageError(DatasetError, OSError):
    """An image file that cannot be decoded (truncated, corrupt, not an image)."""


class UnreadableImageWarning(UserWarning):
    pass


class TransformFailedError(DatasetError):
    """A pipeline step raised on one sample: the message names the step, the file and where it raised."""


def _raised_where(exc: BaseException) -> str:
    """``file.py:function`` of the innermost frame of ``exc``'s traceback."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return '?'
    code = tb.tb_frame.f_code
    return f'{osp.basename(code.co_filename)}:{code.co_name}'


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _subfolders(folder: str) -> List[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith('.'))


@DATASETS.register_module()
class ImageNet(BaseDataset):
    """ImageNet-layout classification dataset (class folders, or ``ann_file`` lines "path label").

    Args:
        data_root: dataset root, joined to ``data_prefix`` and ``ann_file``.
        data_prefix: ``dict(img_path='train')``: the folder with the class folders (or, with
            ``ann_file``, the folder the listed paths are relative to).
        ann_file: optional text file, one "relative/path label" per line (label: class index);
            without it the images are found by scanning the class folders.
        classes: how class names map to indices: ``None`` (the sorted class folders of this split),
            a folder under ``data_root`` whose sorted subfolders are the classes (``'train'``: what a val
            split uses), a text file with one class name per line, or a sequence of names.
        allow_empty_classes: keep a class folder without images (its index stays; a warning) instead
            of raising.
        pipeline: transforms (built from the ``train_cls`` registry, falling back to MMEngine's).
        Other arguments as ``mmengine.dataset.BaseDataset``.
    """

    METAINFO = dict(classes=None)

    def __init__(self,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = dict(img_path='train'),
                 ann_file: str = '',
                 classes: Union[None, str, Sequence[str]] = None,
                 allow_empty_classes: bool = False,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 **kwargs):
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        self._classes_arg = classes
        self.allow_empty_classes = allow_empty_classes
        self.num_skipped = 0
        # Built from our registry, so the dataset works outside a Runner (no default scope) too.
        transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix, pipeline=[],
                         test_mode=test_mode, **kwargs)
        self.pipeline = Compose(transforms)

    # ----------------------------------------------------------------------------------------------
    @property
    def split_name(self) -> str:
        return osp.basename(osp.normpath(self.data_prefix['img_path'])) or self.data_prefix['img_path']

    def _resolve_classes(self, own_folder: Optional[str]) -> List[str]:
        spec = self._classes_arg
        if spec is None:
            if own_folder is None:
                raise DatasetError('an ann_file dataset needs `classes` (a class folder such as "train", '
                                   'a text file with one class name per line, or a list)')
            return _subfolders(own_folder)
        if isinstance(spec, str):
            path = spec if osp.isabs(spec) else osp.join(self.data_root or '', spec)
            if osp.isdir(path):
                return _subfolders(path)
            if osp.isfile(path):
                with open(path) as f:
                    return [line.strip() for line in f if line.strip()]
            raise DatasetError(f'classes={spec!r}: {path} is neither a class folder nor a class-list file')
        return [str(c) for c in spec]

    def load_data_list(self) -> List[dict]:
        folder = self.data_prefix['img_path']
        if not osp.isdir(folder):
            raise DatasetError(f'image folder not found: {folder} (data_root={self.data_root!r}, '
                               f'data_prefix={self.data_prefix!r})')
        if self.ann_file:
            data_list, classes = self._load_ann_file(folder)
        else:
            data_list, classes = self._scan_folders(folder)
        if not data_list:
            raise DatasetError(f'no images found in {self.ann_file or folder}')
        self._metainfo['classes'] = tuple(classes)
        return data_list

    def _scan_folders(self, folder: str):
        own = _subfolders(folder)
        if not own:
            raise DatasetError(f'{folder} has no class folders: expected {folder}/<wnid>/*.JPEG')
        classes = self._resolve_classes(folder)
        index = {c: i for i, c in enumerate(classes)}
        unknown = [c for c in own if c not in index]
        if unknown:
            raise DatasetError(
                f'the {self.split_name} split has class folders that the class list '
                f'({self._classes_arg or folder}, {len(classes)} classes) does not: {names(unknown, 5)}; the '
                'splits must share their class folders (a class index is the position of its folder name in '
                'the sorted train list)')
        present = set(own)
        missing = [c for c in classes if c not in present]
        if missing:
            print_log(f'the {self.split_name} split has no folder for {len(missing)} of {len(classes)} classes '
                      f'({names(missing, 5)}); the others keep their train indices', logger='current',
                      level=30)
        data_list, empty = [], []
        for wnid in own:
            files = sorted(e.name for e in os.scandir(osp.join(folder, wnid))
                           if e.is_file() and _is_image(e.name))
            if not files:
                empty.append(wnid)
            data_list += [dict(img_path=osp.join(folder, wnid, f), gt_label=index[wnid]) for f in files]
        if empty:
            where = ', '.join(osp.join(folder, w) for w in empty[:5]) + (' ...' if len(empty) > 5 else '')
            if not self.allow_empty_classes:
                raise DatasetError(f'{len(empty)} empty class folder(s) (no image files): {where}; an '
                                   'incomplete extraction? Fill or remove them (or set '
                                   'allow_empty_classes=True)')
            print_log(f'{len(empty)} empty class folder(s), kept with no images: {where}', logger='current',
                      level=30)
        return data_list, classes

    def _load_ann_file(self, folder: str):
        if not osp.isfile(self.ann_file):
            raise DatasetError(f'ann_file not found: {self.ann_file}')
        classes = self._resolve_classes(None)
        data_list = []
        with open(self.ann_file) as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                    raise DatasetError(f'{self.ann_file}:{lineno}: expected "relative/path label", '
                                       f'got {line!r}')
                label = int(parts[1])
                if not 0 <= label < len(classes):
                    raise DatasetError(f'{self.ann_file}:{lineno}: label {label} outside 0..{len(classes) - 1} '
                                       f'({len(classes)} classes)')
                data_list.append(dict(img_path=osp.join(folder, parts[0]), gt_label=label))
        return data_list, classes

    # ----------------------------------------------------------------------------------------------
    def prepare_data(self, idx: int):
        """The pipeline's output; ``None`` (MMEngine then draws another index) for an unreadable
        training image, an error naming the file in test mode."""
        info = self.get_data_info(idx)
        try:
            return self._run_pipeline(info)
        except UnreadableImageError as e:
            if self.test_mode:
                raise UnreadableImageError(f'{e} -- in the {self.split_name} split, where every image counts: '
                                           'fix or remove the file') from None
            self.num_skipped += 1
            msg = f'skipping unreadable training image: {e}'
            warnings.warn(msg, UnreadableImageWarning)
            print_log(msg, logger='current', level=30)
            return None

    def _run_pipeline(self, results: dict):
        """The pipeline step by step; a step that raises (other than an unreadable image or an error that
        already names its input) is one ``TransformFailedError`` naming the step and the file."""
        path = results.get('img_path')
        for t in self.pipeline.transforms:
            try:
                results = t(results)
            except (UnreadableImageError, DatasetError):
                raise
            except Exception as e:
                name = type(t).__name__
                msg = str(e).splitlines()[0] if str(e) else ''
                raise TransformFailedError(f'{name} failed on {path}: {type(e).__name__}: {msg} (raised in '
                                           f'{_raised_where(e)})') from e
            if results is None:
                return None
        return results

"""The COCO rule that reads the image files of an annotation file's ``images``: each exists, decodes with the
pipeline's loader and has its entry's size."""
import os.path as osp
from typing import Optional

from backbones.datasets.checks.images import honours_exif, read_image_header, size_mismatch, unusable
from backbones.utils.errors import AnnotationError, DatasetError
from backbones.utils.io import names


def check_image_files(images: dict, img_dir: str, color_type: str, imdecode_backend: Optional[str],
                      where: str) -> list:
    """Every image file exists, decodes with the pipeline's loader and has its entry's size (EXIF applied as
    the loader applies it); returns the images that the EXIF orientation flips or turns 180 degrees."""
    exif = honours_exif(color_type, imdecode_backend)
    lost, unreadable, sizes, turned = [], [], [], []
    for img in images.values():
        path = osp.join(img_dir, img['file_name'])
        try:
            header = read_image_header(path)
        except FileNotFoundError:
            lost.append(path)
            continue
        why = unusable(header, imdecode_backend, color_type)
        if why:
            unreadable.append(f'{path}: {why}')
            continue
        mismatch = size_mismatch(header, (img['width'], img['height']), exif)
        if mismatch:
            sizes.append(mismatch)
        elif exif and header.orientation in (2, 3, 4):
            turned.append(f'{path} (EXIF orientation {header.orientation})')
    if lost:
        raise DatasetError(f'{where}: {len(lost)} of {len(images)} image files not found: {names(lost, 3)}')
    if unreadable:
        raise DatasetError(f'{where}: {len(unreadable)} of {len(images)} images cannot be loaded: '
                           f'{names(unreadable, 3)}')
    if sizes:
        raise AnnotationError(f'{where}: {len(sizes)} of {len(images)} images differ in size from their '
                              f'entry in "images" (width/height; boxes and masks would not fit them): '
                              f'{names(sizes, 3)}')
    return turned

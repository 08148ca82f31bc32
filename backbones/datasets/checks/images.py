"""Image files: headers, end markers, the size a loader decodes to, 16-bit PNGs (used by the segmentation
and COCO checks and by the checked pipeline steps)."""
import os
import struct
from typing import NamedTuple, Optional, Tuple

import numpy as np

from backbones.datasets.checks.common import _warn, _warned
from backbones.utils.errors import AnnotationError
from backbones.utils.io import error_line

EXIF_ORIENTATION = 0x0112


PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


_PNG_MODES = {0: 'L', 2: 'RGB', 3: 'P', 4: 'LA', 6: 'RGBA'}  # IHDR colour type -> PIL mode (8 bit)


TAIL_BYTES = 1024  # where a file's end marker is looked for


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
        if head.startswith(PNG_SIGNATURE) and head[12:16] == b'IHDR':
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
        return f'does not decode ({type(e).__name__}: {error_line(e)})'
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


def png_bit_depth(path: str) -> Optional[int]:
    """A PNG's bit depth from its IHDR (the first 25 bytes); None if not a readable local PNG."""
    try:
        with open(path, 'rb') as f:
            head = f.read(26)
    except OSError:
        return None
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b'IHDR' and len(head) >= 25:
        return head[24]
    return None


# Chunks that may precede IDAT in a PNG that OpenCV and Pillow decode alike (no transparency, palette,
# significant-bits or background chunk: tRNS would make OpenCV add an alpha channel)
_PLAIN_CHUNKS = {b'IHDR', b'pHYs', b'tEXt', b'zTXt', b'iTXt', b'tIME'}


def png_fast_gray(data: bytes) -> bool:
    """Whether ``data`` is an 8-bit greyscale PNG whose chunks before the pixels are only ``_PLAIN_CHUNKS``:
    one that ``cv2.imdecode(IMREAD_UNCHANGED)`` turns into the same 2-D uint8 array as Pillow."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b'IHDR' or len(data) < 33 or data[24:26] != b'\x08\x00':
        return False
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        if kind == b'IDAT':
            return True
        if kind not in _PLAIN_CHUNKS:
            return False
        pos += 12 + length
    return False


def sixteen_bit_values(path: str) -> np.ndarray:
    """The values of a 16-bit annotation PNG that do not fit 8 bits (sorted, unique)."""
    from PIL import Image
    with Image.open(path) as im:
        arr = np.asarray(im)
    return np.unique(arr[arr > 255])


def sixteen_bit_error(path: str, big: np.ndarray) -> AnnotationError:
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

"""The COCO rules that read the annotation file itself: its lists and ids, the config's classes among its
categories, every annotation's image, category, box and mask as mmdet's ``CocoDataset`` and ``LoadAnnotations``
take them. ``coco.check_coco_annotations`` runs them; the rules and their reasons: docs/data_checks.md."""
import json
from collections import Counter
from typing import Optional, Sequence, Tuple

from backbones.utils.errors import AnnotationError, DatasetError
from backbones.utils.io import names

BOX_TOLERANCE = 1.0  # px a box may reach past the image border before it counts as "partly outside"


def _polygons_dropped(seg) -> Optional[int]:
    """Of a polygon ``segmentation``: how many of its polygons mmdet's LoadAnnotations drops (fewer than
    3 points, or an odd number of coordinates); None if that is all of them (the object is then ignored)."""
    bad = 0
    for p in seg:
        if not (isinstance(p, (list, tuple)) and len(p) >= 6 and not len(p) % 2):
            bad += 1
    return None if bad == len(seg) else bad


def read_json(ann_file: str):
    """The parsed file; a missing or non-JSON file is a ``DatasetError`` naming it."""
    try:
        with open(ann_file) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f'annotation file not found: {ann_file}') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f'{ann_file} is not a JSON file ({e})') from None


def read_instances(ann_file: str) -> dict:
    """The parsed file, which must hold the lists ``images``, ``annotations`` and ``categories``."""
    data = read_json(ann_file)
    missing = [k for k in ('images', 'annotations', 'categories') if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(f'{ann_file} is not a COCO instances file: '
                           f'no list {names((repr(k) for k in missing), 5)}')
    return data


def index_images(data: dict, where: str) -> dict:
    """id -> image entry; each entry has an id, a file name and a positive width and height, ids unique."""
    images = {}
    for img in data['images']:
        if not isinstance(img, dict) or 'id' not in img or 'file_name' not in img:
            raise AnnotationError(f'{where}: an image entry without "id" or "file_name": {str(img)[:200]}')
        if img['id'] in images:
            raise AnnotationError(f'{where}: image id {img["id"]} appears twice in "images"')
        if not all(isinstance(img.get(k), (int, float)) and img[k] > 0 for k in ('width', 'height')):
            raise AnnotationError(f'{where}: image {img["id"]} ({img["file_name"]}) has no positive '
                                  f'"width"/"height" (mmdet needs both): {str(img)[:200]}')
        images[img['id']] = img
    return images


def index_categories(data: dict, where: str) -> dict:
    """id -> category name; each entry has an id, ids unique."""
    categories = {}
    for cat in data['categories']:
        if not isinstance(cat, dict) or 'id' not in cat:
            raise AnnotationError(f'{where}: a category entry without "id": {str(cat)[:200]}')
        if cat['id'] in categories:
            raise AnnotationError(f'{where}: category id {cat["id"]} appears twice in "categories"')
        categories[cat['id']] = cat.get('name')
    return categories


def config_category_ids(classes: Optional[Sequence[str]], categories: dict, where: str) -> Optional[set]:
    """The category ids of the config's classes (None: every category); a class the file lacks is an error."""
    if classes is None:
        return None
    in_file = set(categories.values())
    absent = [c for c in classes if c not in in_file]
    if absent:
        hint = (' (no metainfo=dict(classes=...) in the dataset config, so COCO\'s 80 names apply?)'
                if len(absent) == len(classes) else '')
        raise DatasetError(f'{where}: class names of the config not in the file\'s categories: '
                           f'{names(absent, 5)}; the file has {names(in_file, 5)}{hint}')
    return {cid for cid, name in categories.items() if name in set(classes)}


def _box_problem(ann: dict, img: dict) -> Optional[Tuple[str, str]]:
    """(kind, text) of a box mmdet would drop without a word: not 4 numbers with an area, of negative size,
    or entirely outside its image; None for a box it reads."""
    box = ann.get('bbox')
    numbers = isinstance(box, (list, tuple)) and all(isinstance(v, (int, float)) for v in box)
    if not (numbers and len(box) == 4 and isinstance(ann.get('area'), (int, float))):
        return 'bad_box', (f'annotation {ann.get("id")} (image {img["file_name"]}): bbox {box}, '
                           f'area {ann.get("area")}')
    x, y, w, h = box
    W, H = img['width'], img['height']
    if w < 0 or h < 0:
        return 'negative', f'annotation {ann.get("id")} (image {img["file_name"]}): bbox [x, y, w, h] = {box}'
    meets = min(x + w, W) > max(x, 0) and min(y + h, H) > max(y, 0)
    if not meets and w > 0 and h > 0:  # a real box that does not meet its image
        return 'outside', (f'annotation {ann.get("id")} (image {img["file_name"]}, {W}x{H}): '
                           f'bbox [x, y, w, h] = {box}')
    return None


def _partly_outside(ann: dict, img: dict) -> bool:
    """The box reaches past the image border by more than ``BOX_TOLERANCE`` (Resize clips it)."""
    x, y, w, h = ann['bbox']
    W, H = img['width'], img['height']
    t = BOX_TOLERANCE
    return x < -t or y < -t or x + w > W + t or y + h > H + t


def _mask_verdict(ann: dict, img: dict, poly2mask: bool) -> Tuple[str, str, int]:
    """How mmdet's ``LoadAnnotations(with_mask=True, poly2mask=...)`` takes an object's segmentation:
    (verdict, text, polygons dropped); verdict 'none' (no segmentation), 'ignored' (the object is not trained
    on: no polygon of 3 points, or an RLE it cannot use), 'rle_size' (an RLE of another size than the
    image: fails in a worker) or 'ok'."""
    seg = ann.get('segmentation')
    what = f'annotation {ann.get("id")} (image {img["file_name"]})'
    if not seg:
        return 'none', what, 0
    if isinstance(seg, list):
        dropped = _polygons_dropped(seg)
        if dropped is None:
            lengths = [len(p) if isinstance(p, (list, tuple)) else p for p in seg]
            return 'ignored_poly', f'{what}: polygons of {lengths} coordinates (3 points take 6)', 0
        return 'ok', what, dropped
    if isinstance(seg, dict):
        if not poly2mask or not (seg.get('counts') is not None and seg.get('size') is not None
                                 and isinstance(seg['counts'], (list, str))):
            return 'ignored_rle', what, 0
        if list(seg['size']) != [img['height'], img['width']]:
            return 'rle_size', (f'{what}: RLE size {seg["size"][1]}x{seg["size"][0]}, image '
                                f'{img["width"]}x{img["height"]} (WxH)'), 0
    return 'ok', what, 0


class Tally:
    """What the annotations of one file hold, sorted by rule: errors by kind (``problems``), mmdet's documented
    handling as counts, the objects it trains on per image (``usable``)."""

    ERRORS = ('unknown_img', 'unknown_cat', 'outside', 'negative', 'bad_box', 'no_mask', 'rle_size')

    def __init__(self):
        self.problems = {k: [] for k in self.ERRORS}
        self.ann_ids = Counter()
        self.bad_poly, self.bad_rle = [], []
        self.clipped = self.small = self.crowd = self.other_class = self.dropped_parts = 0
        self.usable = Counter()  # image id -> objects mmdet will train on
        self.in_classes = set()  # images with an annotation of the config's classes (what filter_empty_gt keeps)


def sort_annotation(t: Tally, ann: dict, images: dict, categories: dict, wanted: Optional[set],
                    with_mask: bool, poly2mask: bool) -> None:
    """Files one annotation under the first rule it meets (mmdet's order of dropping / ignoring)."""
    t.ann_ids[ann.get('id')] += 1
    img = images.get(ann.get('image_id'))
    if img is None:
        t.problems['unknown_img'].append(f'annotation {ann.get("id")} -> image_id {ann.get("image_id")}')
        return
    if ann.get('category_id') not in categories:
        t.problems['unknown_cat'].append(f'annotation {ann.get("id")} (image {img["file_name"]}) -> category_id '
                                         f'{ann.get("category_id")}')
        return
    problem = _box_problem(ann, img)
    if problem:
        t.problems[problem[0]].append(problem[1])
        return
    t.clipped += _partly_outside(ann, img)
    if wanted is None or ann['category_id'] in wanted:
        t.in_classes.add(ann['image_id'])
    _, _, w, h = ann['bbox']
    if ann.get('ignore'):
        t.crowd += 1
    elif w < 1 or h < 1 or ann.get('area', 1) <= 0:  # (w or h <= 0: a box that does not meet its image)
        t.small += 1
    elif wanted is not None and ann['category_id'] not in wanted:
        t.other_class += 1
    else:
        _sort_object(t, ann, img, with_mask, poly2mask)


def _sort_object(t: Tally, ann: dict, img: dict, with_mask: bool, poly2mask: bool) -> None:
    """An object mmdet's CocoDataset keeps (crowd ones with an ignore flag); with masks, LoadAnnotations
    decodes its segmentation and ignores the object if no polygon of 3 points or more is left."""
    mask_ignored = False
    if with_mask:
        verdict, text, dropped = _mask_verdict(ann, img, poly2mask)
        if verdict == 'none':
            t.problems['no_mask'].append(text)
            return
        if verdict == 'rle_size':
            t.problems['rle_size'].append(text)
            return
        if verdict == 'ignored_poly':
            t.bad_poly.append(text)
        elif verdict == 'ignored_rle':
            t.bad_rle.append(text)
        mask_ignored = verdict.startswith('ignored')
        t.dropped_parts += dropped
    if ann.get('iscrowd'):
        t.crowd += 1
    elif not mask_ignored:
        t.usable[ann['image_id']] += 1


def raise_annotation_problems(t: Tally, categories: dict, where: str) -> None:
    """The first kind of error found (in this order) as one ``AnnotationError`` with a count and examples."""
    what = {
        'unknown_img': 'annotations of images not in "images"',
        'unknown_cat': f'annotations with a category_id not in "categories" (ids: {names(sorted(categories), 5)})',
        'outside': 'boxes entirely outside their image',
        'negative': 'boxes of negative width or height (a COCO bbox is [x, y, width, height], not two corners; '
                    'mmdet would drop them as "under 1 px")',
        'bad_box': 'annotations without a bbox [x, y, w, h] and a numeric area',
        'no_mask': 'annotations without a segmentation (the pipeline loads masks)',
        'rle_size': 'RLE masks whose size differs from their image\'s (mmdet would fail on them in a dataloader '
                    'worker: "cannot reshape array" or "all input arrays must have the same shape")',
    }
    for kind in Tally.ERRORS:
        if t.problems[kind]:
            raise AnnotationError(f'{where}: {len(t.problems[kind])} {what[kind]}: {names(t.problems[kind], 3)}')
    dup = [f'annotation id {i}' for i, n in t.ann_ids.items() if n > 1]
    if dup:
        raise AnnotationError(f'{where}: {len(dup)} duplicate annotation ids: {names(dup, 3)}')


def handling_notes(t: Tally, empty: list, bare: list, turned: list, for_training: bool,
                   filter_empty_gt: bool) -> list:
    """mmdet's documented handling of what the file holds, as lines for the log."""
    notes = []
    if bare:
        notes.append(f'{len(bare)} images without objects' + (
            (' (left out of training: filter_empty_gt)' if filter_empty_gt else ' (trained as background)')
            if for_training else ''))
    if len(empty) > len(bare):
        notes.append(f'{len(empty) - len(bare)} images with annotations but no object to train on'
                     + (' (trained as background)' if for_training else ''))
    if t.clipped:
        notes.append(f'{t.clipped} boxes partly outside their image (clipped to it by Resize)')
    if t.small:
        notes.append(f'{t.small} boxes of zero size or under 1 px (not trained on)')
    if t.other_class:
        notes.append(f'{t.other_class} objects of categories outside the config\'s classes (ignored)')
    if t.crowd:
        notes.append(f'{t.crowd} crowd/ignore objects (not trained on)')
    if t.bad_poly:
        notes.append(f'{len(t.bad_poly)} objects whose polygons all have fewer than 3 points (not trained on: '
                     f'mmdet\'s LoadAnnotations ignores them): {names(t.bad_poly, 3)}')
    if t.dropped_parts:
        notes.append(f'{t.dropped_parts} polygons of fewer than 3 points left out of their object\'s mask')
    if t.bad_rle:
        notes.append(f'{len(t.bad_rle)} objects whose RLE mask mmdet cannot use (not trained on): '
                     f'{names(t.bad_rle, 3)}')
    if turned:
        notes.append(f'{len(turned)} images with an EXIF orientation that flips or turns them 180 degrees '
                     f'when loaded (same size; assumed the annotations are of the loaded orientation): '
                     f'{names(turned, 3)}')
    return notes

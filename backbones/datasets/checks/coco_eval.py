"""The COCO rule for evaluation: pycocotools' COCOeval (mmdet's ``CocoMetric``) reads keys of every ground-truth
annotation that training does not; a file without them stops the first validation with a KeyError."""
from backbones.datasets.checks.coco_annotations import read_json
from backbones.utils.errors import AnnotationError

EVAL_KEYS = ('id', 'iscrowd', 'area')  # what pycocotools' COCOeval reads of every ground-truth annotation


def eval_key_problems(annotations: list) -> str:
    """'' or what keeps pycocotools' COCOeval from reading these annotations (it raises KeyError on them)."""
    lacking = {k: [a for a in annotations if isinstance(a, dict) and k not in a] for k in EVAL_KEYS}
    parts = [f'{len(v)} of {len(annotations)} annotations have no "{k}" (e.g. annotation '
             f'{v[0].get("id", "?")} of image {v[0].get("image_id", "?")})' for k, v in lacking.items() if v]
    if not parts:
        return ''
    hint = ' (add "iscrowd": 0 to each ordinary object)' if lacking['iscrowd'] else ''
    return ('; '.join(parts) + ': pycocotools\' evaluation (CocoMetric) would stop with a KeyError at the first '
            f'validation{hint}')


def check_coco_eval_file(ann_file: str) -> None:
    """An evaluator's ``ann_file``: a COCO file whose annotations pycocotools' COCOeval can read."""
    data = read_json(ann_file)
    problems = eval_key_problems(data.get('annotations') or []) if isinstance(data, dict) else 'not a COCO file'
    if problems:
        raise AnnotationError(f'{ann_file}: {problems}')

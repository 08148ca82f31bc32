"""Detect (and segment) objects in one image with an mmdet config + checkpoint; write a PNG of the result.

    python tools/demo_det.py IMAGE CONFIG CHECKPOINT [--out result.png] [--score-thr 0.3] [--device cpu]

The model comes from mmdet's ``init_detector`` (SyncBN -> BN, no pretrained backbone loading) and runs
through ``inference_detector`` with the config's test pipeline. The checkpoint (a training checkpoint of
``tools/train.py`` or a plain state dict) must fit the model exactly (init_detector alone only warns).
Boxes, masks and class labels scoring at least ``--score-thr`` are drawn by mmdet's ``DetLocalVisualizer``;
class names come from the checkpoint's ``dataset_meta`` (saved by training), else from the config's test
dataset. Prints one line per drawn detection.
"""
import argparse
import os
import os.path as osp

from backbones.checks import check_checkpoint_fits
from backbones.cli import load_config, run_cli
from backbones.errors import UserInputError
from backbones.runtime import fallback_syncbn_on_cpu, install_mmengine_fixes, trust_run_checkpoints
from backbones.weights import read_checkpoint, unwrap_state_dict


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('image', help='an image file (jpg, png, ...)')
    p.add_argument('config', help='an mmdet config, e.g. configs/mask-rcnn_inceptionnext-t_fpn_1x_coco.py')
    p.add_argument('checkpoint', help='weights for that config (tools/train.py checkpoint or state dict)')
    p.add_argument('--out', help='output PNG (default: <image name>_det.png in the current folder)')
    p.add_argument('--score-thr', type=float, default=0.3, help='draw detections scoring at least this')
    p.add_argument('--device', default=None, help='cpu, cuda:0, ... (default: cuda:0 if available, else cpu)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='override config keys (keys must exist), e.g. model.test_cfg.rcnn.score_thr=0.1')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for what, path in (('image', args.image), ('config', args.config), ('checkpoint', args.checkpoint)):
        if not osp.isfile(path):
            raise UserInputError(f'{what} file not found: {path}')
    import mmcv
    import torch
    img = mmcv.imread(args.image)  # BGR; None for a file that is not an image
    if img is None:
        raise UserInputError(f'cannot read {args.image} as an image')

    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import DATASETS, VISUALIZERS
    cfg = load_config(args.config, args.cfg_options)
    if cfg.get('default_scope') != 'mmdet':
        raise UserInputError(f'{args.config} is not a detection config '
                             f'(default_scope={cfg.get("default_scope")!r})')
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    if device == 'cpu':
        fallback_syncbn_on_cpu(cfg)
    cfg.model.backbone.init_cfg = None  # the checkpoint holds the backbone too
    ckpt = read_checkpoint(args.checkpoint, trusted=True)  # the user named it (as for tools/test.py)
    state = unwrap_state_dict(ckpt)
    install_mmengine_fixes()
    trust_run_checkpoints(None, args.checkpoint)  # MMEngine's loader may unpickle this one file
    model = init_detector(cfg, args.checkpoint, palette='none', device=device)
    check_checkpoint_fits(model, {'state_dict': state}, args.checkpoint)  # init_detector only warns
    if not (isinstance(ckpt, dict) and (ckpt.get('meta') or {}).get('dataset_meta')):
        test_set = dict(cfg.test_dataloader.dataset, lazy_init=True)
        model.dataset_meta = {k.lower(): v for k, v in DATASETS.build(test_set).metainfo.items()}
    model.dataset_meta.setdefault('palette', 'random')

    result = inference_detector(model, args.image)

    out = args.out or (osp.splitext(osp.basename(args.image))[0] + '_det.png')
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    vis = VISUALIZERS.build(dict(type='DetLocalVisualizer', name=f'demo_det_{os.getpid()}'))
    vis.dataset_meta = model.dataset_meta
    vis.add_datasample('result', mmcv.imconvert(img, 'bgr', 'rgb'), data_sample=result, draw_gt=False,
                       show=False, out_file=out, pred_score_thr=args.score_thr)

    pred = result.pred_instances
    keep = pred.scores >= args.score_thr
    classes = model.dataset_meta.get('classes', ())
    for box, label, score in zip(pred.bboxes[keep].tolist(), pred.labels[keep].tolist(),
                                 pred.scores[keep].tolist()):
        name = classes[label] if label < len(classes) else str(label)
        print(f'{name:<16} {score:.3f}  box [{", ".join(f"{v:.1f}" for v in box)}]')
    masks = ' with masks' if 'masks' in pred else ''
    print(f'{int(keep.sum())} detections{masks} with score >= {args.score_thr} (of {len(pred)}); wrote {out}')
    return 0


if __name__ == '__main__':
    run_cli(main)

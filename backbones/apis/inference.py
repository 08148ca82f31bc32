"""One image through a trained model, drawn as a PNG: the library side of ``tools/misc/demo_seg.py`` and
``tools/misc/demo_det.py`` (mmseg's / mmdet's inference APIs and visualizers; our strict checkpoint checks)."""
import os
import os.path as osp
from typing import Optional

from backbones.engine.checks import check_checkpoint_fits
from backbones.engine.mmengine_fixes import (
    fallback_syncbn_on_cpu,
    install_mmengine_fixes,
)
from backbones.models.weights import model_state_dict, read_checkpoint, resolve_checkpoint
from backbones.utils.config import load_config
from backbones.utils.errors import UserInputError


def _read_inputs(image: str, config: str, checkpoint: str):
    """The image (BGR) and the checkpoint, after checking that the three files exist and can be read (the
    checkpoint with the suite's safe reader, ``models.weights.read_checkpoint``)."""
    import mmcv
    checkpoint = resolve_checkpoint(checkpoint)  # a URL / hub name: downloaded once
    for path, what in ((image, 'image'), (config, 'config'), (checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise UserInputError(f'{what} file not found: {path}')
    img = mmcv.imread(image)  # None for a file that is not an image
    if img is None:
        raise UserInputError(f'cannot read image {image}')
    ckpt = read_checkpoint(checkpoint)
    install_mmengine_fixes()  # mmdet's init_detector reads it again, through the same safe reader
    return img, ckpt, checkpoint


def _dataset_meta(ckpt, cfg, scope: str) -> dict:
    """Class names (and palette) of the model: the checkpoint's ``meta.dataset_meta`` (training saves it),
    else the config's test dataset's."""
    import importlib
    meta = (ckpt.get('meta') or {}).get('dataset_meta') if isinstance(ckpt, dict) else None
    if meta:
        return dict(meta)
    datasets = importlib.import_module(f'{scope}.registry').DATASETS
    test_set = dict(cfg.test_dataloader.dataset, lazy_init=True)
    return {k.lower(): v for k, v in datasets.build(test_set).metainfo.items()}


def segment(image: str, config: str, checkpoint: str, out: str, opacity: float = 0.5, device: str = 'cpu',
            min_side: int = 384):
    """Runs the model on ``image`` and writes the overlay to ``out``; returns the (H, W) label map."""
    import mmcv
    import numpy as np
    import torch
    from mmengine.structures import PixelData
    from mmseg.apis import inference_model, init_model
    from mmseg.structures import SegDataSample
    from mmseg.visualization import SegLocalVisualizer
    img, ckpt, checkpoint = _read_inputs(image, config, checkpoint)
    cfg = load_config(config)
    if cfg.get('default_scope') != 'mmseg':
        raise UserInputError(f'{config} is not a segmentation config '
                             f'(default_scope={cfg.get("default_scope")!r})')
    model = init_model(cfg, None, device=device)  # also turns SyncBN into BN off-GPU
    state = model_state_dict(ckpt)
    check_checkpoint_fits(model, {'state_dict': state}, checkpoint)  # mmseg's loader only warns
    model.load_state_dict(state)
    model.dataset_meta = _dataset_meta(ckpt, cfg, 'mmseg')
    result = inference_model(model, img)
    labels = result.pred_sem_seg.data[0].cpu().numpy()
    # Small images are drawn enlarged (nearest for the labels) so that the class names stay legible.
    scale = max(1, int(np.ceil(min_side / min(img.shape[:2]))))
    if scale > 1:
        img = mmcv.imrescale(img, scale, interpolation='bicubic')
        pred = torch.from_numpy(mmcv.imrescale(labels.astype(np.uint8), scale, interpolation='nearest'))
        result = SegDataSample(pred_sem_seg=PixelData(data=pred[None].long()))
    vis = SegLocalVisualizer(alpha=opacity)  # draws into ``out`` itself: no storage backend (which wants a save_dir)
    vis.dataset_meta = model.dataset_meta
    vis.add_datasample('overlay', mmcv.bgr2rgb(img), result, draw_gt=False, show=False, with_labels=True,
                       out_file=out)
    return labels


def detect(image: str, config: str, checkpoint: str, out: Optional[str] = None, score_thr: float = 0.3,
           device: Optional[str] = None, options: Optional[dict] = None) -> dict:
    """Runs an mmdet config's model on ``image`` and draws the detections scoring at least ``score_thr``
    into ``out`` (default ``<image name>_det.png``). Returns ``detections`` ((class, score, box) each),
    ``out``, ``total`` (detections before the threshold) and ``masks`` (whether it segments)."""
    import mmcv
    import torch
    img, ckpt, checkpoint = _read_inputs(image, config, checkpoint)

    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS
    cfg = load_config(config, options)
    if cfg.get('default_scope') != 'mmdet':
        raise UserInputError(f'{config} is not a detection config '
                             f'(default_scope={cfg.get("default_scope")!r})')
    device = device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    if device == 'cpu':
        fallback_syncbn_on_cpu(cfg)
    cfg.model.backbone.init_cfg = None  # the checkpoint holds the backbone too
    model = init_detector(cfg, checkpoint, palette='none', device=device)
    check_checkpoint_fits(model, {'state_dict': model_state_dict(ckpt)}, checkpoint)  # mmdet's only warns
    model.dataset_meta = _dataset_meta(ckpt, cfg, 'mmdet')
    model.dataset_meta.setdefault('palette', 'random')

    result = inference_detector(model, image)

    out = out or (osp.splitext(osp.basename(image))[0] + '_det.png')
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    vis = VISUALIZERS.build(dict(type='DetLocalVisualizer', name=f'demo_det_{os.getpid()}'))
    vis.dataset_meta = model.dataset_meta
    vis.add_datasample('result', mmcv.imconvert(img, 'bgr', 'rgb'), data_sample=result, draw_gt=False,
                       show=False, out_file=out, pred_score_thr=score_thr)

    pred = result.pred_instances
    keep = pred.scores >= score_thr
    classes = model.dataset_meta.get('classes', ())
    detections = [(classes[label] if label < len(classes) else str(label), score, box)
                  for box, label, score in zip(pred.bboxes[keep].tolist(), pred.labels[keep].tolist(),
                                               pred.scores[keep].tolist())]
    return dict(detections=detections, out=out, total=len(pred), masks='masks' in pred)

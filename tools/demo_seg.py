"""Segment an image with a config + checkpoint and write the overlay PNG (mmseg's visualizer).

    python tools/demo_seg.py IMAGE CONFIG CHECKPOINT [--out overlay.png] [--opacity 0.5] [--device cpu]

Works on any image file OpenCV reads; the overlay shows the predicted classes in the dataset's palette
with a legend of the classes present.
"""
import argparse
import os
import os.path as osp

from backbones.cli import run_cli
from backbones.errors import UserInputError
from backbones.runtime import install_mmengine_fixes, trust_run_checkpoints


def segment(image: str, config: str, checkpoint: str, out: str, opacity: float = 0.5, device: str = 'cpu',
            min_side: int = 384):
    """Runs the model on ``image`` and writes the overlay to ``out``; returns the (H, W) label map."""
    import mmcv
    import numpy as np
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    from mmseg.apis import inference_model, init_model
    from mmseg.visualization import SegLocalVisualizer
    for path, what in ((image, 'image'), (config, 'config'), (checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise UserInputError(f'{what} file not found: {path}')
    img = mmcv.imread(image)
    if img is None:
        raise UserInputError(f'cannot read image {image}')
    install_mmengine_fixes()
    trust_run_checkpoints(None, checkpoint)  # the user named it: MMEngine's loader may unpickle this one file
    model = init_model(config, checkpoint, device=device)  # also turns SyncBN into BN off-GPU
    result = inference_model(model, img)
    labels = result.pred_sem_seg.data[0].cpu().numpy()
    # Small images are drawn enlarged (nearest for the labels) so that the class names stay legible.
    scale = max(1, int(np.ceil(min_side / min(img.shape[:2]))))
    if scale > 1:
        img = mmcv.imrescale(img, scale, interpolation='bicubic')
        pred = torch.from_numpy(mmcv.imrescale(labels.astype(np.uint8), scale, interpolation='nearest'))
        result = SegDataSample(pred_sem_seg=PixelData(data=pred[None].long()))
    vis = SegLocalVisualizer(vis_backends=[dict(type='LocalVisBackend')], save_dir=None, alpha=opacity)
    vis.dataset_meta = model.dataset_meta
    vis.add_datasample('overlay', mmcv.bgr2rgb(img), result, draw_gt=False, show=False, with_labels=True,
                       out_file=out)
    return labels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('image')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out', default='overlay.png')
    p.add_argument('--opacity', type=float, default=0.5)
    p.add_argument('--device', default='cpu')
    args = p.parse_args(argv)
    labels = segment(args.image, args.config, args.checkpoint, args.out, args.opacity, args.device)
    print(f'wrote {os.path.abspath(args.out)} ({labels.shape[1]}x{labels.shape[0]}, classes present: '
          f'{sorted(set(labels.ravel().tolist()))})')
    return 0


if __name__ == '__main__':
    run_cli(main)

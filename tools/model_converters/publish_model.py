"""Publish a training checkpoint the OpenMMLab way: weights + config + class names, nothing else.

    python tools/model_converters/publish_model.py work_dirs/upernet_inceptionnext_t/iter_160000.pth \
        upernet_inceptionnext_t.pth
    # -> upernet_inceptionnext_t-<first 8 hex digits of its sha256>.pth

Keeps ``state_dict`` (with EMAHook: the averaged weights, as MMEngine stores them) and ``meta``'s config,
``dataset_meta`` (class names, palette) and versions; drops the optimizer, parameter schedulers, message hub and
RNG states. The output loads with ``torch.load(weights_only=True)``: ``mmseg.apis.init_model``,
``mmdet.apis.init_detector``, ``MMSegInferencer`` / ``DetInferencer`` (also from the file alone: the config is
in it) and mmseg's / mmdet's tools read it as it is.

The input is read with torch's weights_only unpickler (checkpoints of this suite are plain data); a checkpoint
written by an older version, which pickles MMEngine's HistoryBuffer and numpy values, is read with exactly those
types allowed, never arbitrary code.
"""
import argparse

from backbones.models.weights import publish_checkpoint
from backbones.utils.cli import run_cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('in_file', help='a checkpoint of tools/train.py (iter_*.pth / epoch_*.pth)')
    p.add_argument('out_file', help='output name; the sha256 prefix is appended: OUT-xxxxxxxx.pth')
    args = p.parse_args(argv)
    final = publish_checkpoint(args.in_file, args.out_file)
    print(f'wrote {final}')
    return 0


if __name__ == '__main__':
    run_cli(main)

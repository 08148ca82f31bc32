"""A train / test run from the command line: the config (file, ``--cfg-options``, work dir, launcher,
our runner), the pre-flight checks, the Runner."""
import os
import os.path as osp

from backbones.datasets.checks.coco import check_coco_datasets
from backbones.datasets.checks.common import check_data_folders
from backbones.datasets.checks.segmentation import check_seg_datasets
from backbones.engine.checks import check_backbone
from backbones.utils.config import load_config


def run_config(args):
    """The config of a train / test run: file + --cfg-options + work dir + launcher + our runner."""
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.launcher = args.launcher
    cfg.setdefault('runner_type', 'RobustRunner')  # installs backbones.engine.mmengine_fixes
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return cfg


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


def preflight(cfg, splits) -> None:
    """Every check that can fail before the Runner is built, for the dataloaders ``splits``: the backbone's
    arguments, the data folders, the COCO files and the segmentation sets."""
    check_backbone(cfg)
    check_data_folders(cfg, splits=splits)
    check_coco_datasets(cfg, splits=splits)
    check_seg_datasets(cfg, splits=splits)

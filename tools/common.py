"""What tools/train.py and tools/test.py share: argument parsing helpers and the config set-up."""
import argparse
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # `python tools/x.py` puts only tools/ on the path

from mmengine.config import Config, DictAction  # noqa: E402,F401

from backbones.engine import (UserInputError, fallback_syncbn_on_cpu, merge_cfg_options,  # noqa: E402
                              setup_cpu_distributed, trust_run_checkpoints)


def add_common_args(parser) -> None:
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config keys, e.g. train_dataloader.batch_size=4 (keys must exist)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='none: one process; pytorch: under torchrun (tools/dist_*.sh); slurm: under srun')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)


def load_config(args):
    """Config file + --cfg-options + work dir + launcher, with the CPU fixes of backbones.engine applied."""
    if not osp.isfile(args.config):
        raise UserInputError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.launcher = args.launcher
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    trust_run_checkpoints(cfg.work_dir, getattr(args, 'resume', None), getattr(args, 'checkpoint', None))
    setup_cpu_distributed(cfg)
    fallback_syncbn_on_cpu(cfg)
    return cfg


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def run_cli(main) -> None:
    """Runs ``main()``; bad input (any ``UserInputError``) exits 2 with one line."""
    try:
        sys.exit(main())
    except UserInputError as e:
        # Raised in a dataloader worker, the message carries the worker's traceback: keep its last line.
        print(f'error: {str(e).strip().splitlines()[-1]}', file=sys.stderr)
        sys.exit(2)

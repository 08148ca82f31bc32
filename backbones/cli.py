"""What the command-line tools share: reading a config, the common options, building the runner, and the
one error path (``run_cli``: any ``UserInputError`` becomes one ``error: ...`` line and exit 2)."""
import argparse
import ast
import errno
import os
import os.path as osp
import sys
from typing import Optional

from .errors import UserInputError


def add_common_args(parser) -> None:
    from mmengine.config import DictAction
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config keys, e.g. train_dataloader.batch_size=4 (keys must exist)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='none: one process; pytorch: under torchrun (tools/dist_*.sh); slurm: under srun')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)


def load_config(path: str, options: Optional[dict] = None):
    """``Config.fromfile(path)`` + strict ``--cfg-options``; errors name the file (and line)."""
    from mmengine.config import Config

    from .checks import merge_cfg_options
    if not osp.isfile(path):
        raise UserInputError(f'config file not found: {path}')
    if path.endswith('.py'):  # MMEngine's own syntax error names neither the line nor, in the end, the file
        try:
            with open(path, encoding='utf-8') as f:
                ast.parse(f.read(), filename=path)
        except SyntaxError as e:
            raise UserInputError(f'{path}:{e.lineno}: syntax error in config: {e.msg}') from None
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # noqa: BLE001 -- MMEngine raises many types for a config it cannot read
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise UserInputError(f'cannot read config {path}: {msg}') from None
    merge_cfg_options(cfg, options)
    return cfg


def run_config(args):
    """The config of a train / test run: file + --cfg-options + work dir + launcher + our runner."""
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.launcher = args.launcher
    cfg.setdefault('runner_type', 'RobustRunner')  # installs backbones.runtime's fixes
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return cfg


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


# Writes that fail for reasons of the machine, not of the code: a full disk, a quota, a read-only or
# forbidden folder. They end the tool with one line too (checkpoints are written atomically, so the last
# complete one is still there).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def run_cli(main) -> None:
    """Runs ``main()``; bad input (any ``UserInputError``) and failed writes (full disk, read-only
    folder) exit 2 with one line, no traceback."""
    try:
        sys.exit(main())
    except UserInputError as e:
        # Raised in a dataloader worker, the message carries the worker's traceback: keep its last line.
        print(f'error: {str(e).strip().splitlines()[-1]}', file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            raise
        where = f' {e.filename}' if e.filename else ''
        print(f'error: cannot write{where}: {e.strerror} (the last complete checkpoint, if any, is intact)',
              file=sys.stderr)
        sys.exit(2)

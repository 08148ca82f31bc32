"""What the command-line tools share: reading a config, the common options, building the runner, and the
one error path (``run_cli``: any ``UserInputError`` becomes one ``error: ...`` line and exit 2)."""
import argparse
import errno
import sys

from backbones.utils.errors import UserInputError
from backbones.utils.io import error_line


def add_cfg_options(parser, example: str = 'train_dataloader.batch_size=4') -> None:
    """``--cfg-options k=v ...`` (MMEngine's ``DictAction``; ``load_config`` checks that the keys exist)."""
    from mmengine.config import DictAction

    class CfgOptions(DictAction):
        """MMEngine's ``DictAction``; an item without ``=`` is a usage error, not a traceback."""

        def __call__(self, parser, namespace, values, option_string=None):
            bad = [v for v in values if '=' not in v]
            if bad:
                parser.error(f'argument {option_string}: {bad[0]!r} is not KEY=VALUE')
            super().__call__(parser, namespace, values, option_string)

    parser.add_argument('--cfg-options', nargs='+', action=CfgOptions, default=None,
                        help=f'override config keys, e.g. {example} (keys must exist)')


def add_common_args(parser) -> None:
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    add_cfg_options(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='none: one process; pytorch: under torchrun (tools/dist_*.sh); slurm: under srun')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)


# Writes that fail for reasons of the machine, not of the code: a full disk, a quota, a read-only or
# forbidden folder. They end the tool with one line too (checkpoints are written atomically, so the last
# complete one is still there).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# A path of the user's that cannot be one: a missing folder on the way, a file where a folder must be (or
# the other way round), a name too long. They name the path.
_PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


def run_cli(main) -> None:
    """Runs ``main()``; bad input (any ``UserInputError``, a path that cannot be used) and failed writes
    (full disk, read-only folder) exit 2 with one line, no traceback."""
    try:
        sys.exit(main())
    except UserInputError as e:
        # Raised in a dataloader worker, the message carries the worker's traceback: keep its last line.
        print(f'error: {error_line(e)}', file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.errno in _PATH_ERRNOS and e.filename:
            print(f'error: {e.filename}: {e.strerror}', file=sys.stderr)
            sys.exit(2)
        if e.errno not in _WRITE_ERRNOS:
            raise
        where = f' {e.filename}' if e.filename else ''
        print(f'error: cannot write{where}: {e.strerror} (the last complete checkpoint, if any, is intact)',
              file=sys.stderr)
        sys.exit(2)

"""Train any config of this repo (classification, mmdet, mmseg) with MMEngine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--compile] [--cfg-options k=v ...]
    tools/dist_train.sh CONFIG GPUS [same options]          # torchrun, one process per GPU (gloo on CPU)

The config's ``default_scope`` decides which registries build it; this tool has no per-task code.
``--resume`` alone resumes from the work dir's last checkpoint; with the RNGStateHook of
configs/_base_/default_runtime.py the resumed run is bitwise the uninterrupted one on CPU. A work dir that
holds an earlier run is refused without ``--resume`` (``--restart`` trains from scratch there).
``--auto-resume`` resumes when the work dir holds a checkpoint and starts afresh otherwise; a Slurm requeue
(``SLURM_RESTART_COUNT`` > 0) and a torchrun restart (``TORCHELASTIC_RESTART_COUNT`` > 0) do that by
themselves. A non-finite loss stops the run (exit 2); SIGTERM, SIGUSR1 and SIGINT save a checkpoint and exit
128 + n (docs/reliability.md).
"""
import argparse

from launch import malloc_env  # tools/launch/malloc_env.py: imports nothing heavy

if __name__ == '__main__':  # before torch is imported: glibc reads its malloc settings at start-up
    malloc_env.ensure()


from backbones.apis.run import run_train  # noqa: E402
from backbones.utils.cli import add_common_args, run_cli  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                   help='resume from CKPT, or (no value) from the last checkpoint in the work dir')
    p.add_argument('--auto-resume', action='store_true',
                   help='resume if the work dir holds a checkpoint, else train from scratch (what a requeued '
                        'Slurm job or a restarted torchrun group does by itself)')
    p.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper; needs a GPU)')
    p.add_argument('--compile', action='store_true', help="torch.compile the train step (MMEngine's cfg.compile)")
    p.add_argument('--restart', action='store_true',
                   help='train from scratch in a work dir that holds an earlier run (without it, such a work dir '
                        'is refused unless --resume continues the run)')
    add_common_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_train(parse_args(argv))


if __name__ == '__main__':
    run_cli(main)

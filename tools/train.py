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


from mmengine.logging import print_log  # noqa: E402

from backbones.apis.run import (  # noqa: E402
    build_runner,
    end_process_group,
    preflight,
    raise_if_batchnorm_got_one_value,
    raise_if_out_of_memory,
    run_config,
)
from backbones.engine.checks import check_resume_checkpoint  # noqa: E402
from backbones.engine.mmengine_fixes import lock_work_dir  # noqa: E402
from backbones.engine.resume import check_resume_fits, find_resume_checkpoint, restarted  # noqa: E402
from backbones.engine.runner import check_work_dir_is_new  # noqa: E402
from backbones.utils.cli import add_common_args, run_cli  # noqa: E402
from backbones.utils.errors import UserInputError  # noqa: E402


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
    args = parse_args(argv)
    cfg = run_config(args)
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise UserInputError('--amp needs a GPU (MMEngine\'s AmpOptimWrapper runs on CUDA only)')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.compile and not isinstance(cfg.get('compile'), dict):  # (a dict of options from --cfg-options stays)
        cfg.compile = True
    if args.restart and (args.resume or args.auto_resume):
        raise UserInputError(f'--{"resume" if args.resume else "auto-resume"} continues the work dir\'s run, '
                             '--restart trains from scratch: pass one')
    why, path, automatic = restarted(), args.resume, False
    if path == 'auto' or why or args.auto_resume:
        found = find_resume_checkpoint(cfg.work_dir)
        if found and why:  # the work dir holds this job's own progress: continue it (a --restart or
            # --resume CKPT on the command line meant the first start)
            print_log(f'{why}: resuming the run in {cfg.work_dir}', logger='current')
            path, args.restart = found, False
        elif path == 'auto' or (args.auto_resume and not path):
            path = found
        automatic = bool(found) and path == found and (bool(why) or args.auto_resume)
        args.resume = args.resume or ('auto' if path else None)
    ckpt = None
    if path:
        ckpt = check_resume_checkpoint(path)
        if not check_resume_fits(cfg, ckpt, path, auto=automatic):
            print_log(f'{path} ends the run (train_cfg\'s last iteration / epoch): nothing is left to train',
                      logger='current')
            return 0
        cfg.resume, cfg.load_from = True, path
    cfg.restart = args.restart
    preflight(cfg, splits=('train_dataloader', 'val_dataloader'))
    lock_work_dir(cfg.work_dir)  # before the Runner writes its config and logs there
    check_work_dir_is_new(cfg.work_dir, args.resume, args.restart)  # (a run in progress: the lock's error)
    runner = build_runner(cfg)
    if cfg.get('compile'):  # dynamo (torch 2.14) cannot trace an optimizer whose param groups are ConfigDicts
        runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)  # (MMEngine's): plain dicts
        opt = getattr(runner.optim_wrapper, 'optimizer', None)
        if opt is not None:
            opt.param_groups[:] = [dict(g) for g in opt.param_groups]
    try:
        runner.train()
    except Exception as e:  # noqa: BLE001 -- only running out of memory is re-worded; the rest goes on
        raise_if_out_of_memory(e, cfg, 'train_dataloader')
        raise_if_batchnorm_got_one_value(e, cfg)
        raise
    end_process_group()
    return 0


if __name__ == '__main__':
    run_cli(main)

"""Train any config of this repo (classification, mmdet, mmseg) with MMEngine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--compile] [--cfg-options k=v ...]
    tools/dist_train.sh CONFIG GPUS [same options]          # torchrun, one process per GPU (gloo on CPU)

The config's ``default_scope`` decides which registries build it; this tool has no per-task code.
``--resume`` alone resumes from the work dir's last checkpoint; with the RNGStateHook of
configs/_base_/default_runtime.py the resumed run is bitwise the uninterrupted one on CPU.
"""
import argparse
import os.path as osp

import malloc_env  # tools/malloc_env.py: imports nothing heavy

if __name__ == '__main__':  # before torch is imported: glibc reads its malloc settings at start-up
    malloc_env.ensure()


from backbones.apis.run import build_runner, preflight, run_config  # noqa: E402
from backbones.engine.checks import check_checkpoint_fits, check_resume_checkpoint  # noqa: E402
from backbones.engine.mmengine_fixes import lock_work_dir  # noqa: E402
from backbones.utils.cli import add_common_args, run_cli  # noqa: E402
from backbones.utils.errors import UserInputError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                   help='resume from CKPT, or (no value) from the last checkpoint in the work dir')
    p.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper; needs a GPU)')
    p.add_argument('--compile', action='store_true', help="torch.compile the train step (MMEngine's cfg.compile)")
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
    ckpt, path = None, args.resume
    if path == 'auto':  # MMEngine's own look-up (work_dir/last_checkpoint), done here to check the file
        from mmengine.runner import find_latest_checkpoint
        path = find_latest_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
    if path:
        ckpt = check_resume_checkpoint(path)
        cfg.resume, cfg.load_from = True, path
    preflight(cfg, splits=('train_dataloader', 'val_dataloader'))
    lock_work_dir(cfg.work_dir)  # before the Runner writes its config and logs there
    runner = build_runner(cfg)
    if cfg.get('compile'):  # dynamo (torch 2.14) cannot trace an optimizer whose param groups are ConfigDicts
        runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)  # (MMEngine's): plain dicts
        opt = getattr(runner.optim_wrapper, 'optimizer', None)
        if opt is not None:
            opt.param_groups[:] = [dict(g) for g in opt.param_groups]
    if ckpt is not None:
        check_checkpoint_fits(runner.model, ckpt, path)
    runner.train()
    return 0


if __name__ == '__main__':
    run_cli(main)

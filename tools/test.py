"""Evaluate a checkpoint of any config of this repo with MMEngine's Runner and the config's evaluator.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir DIR] [--cfg-options k=v ...]
    tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

Prints a progress bar over the test set and the metrics (mmseg IoUMetric, mmdet CocoMetric, top-1/5).
``--tta`` evaluates with the config's multi-scale + flip ``tta_pipeline`` (the papers' "MS" numbers).
"""
import argparse
import inspect
import os
import os.path as osp
import tempfile

from launch import malloc_env  # tools/launch/malloc_env.py: imports nothing heavy

if __name__ == '__main__':  # before torch is imported: glibc reads its malloc settings at start-up
    malloc_env.ensure()


from backbones.apis.run import build_runner, end_process_group, preflight, raise_if_out_of_memory, run_config  # noqa: E402
from backbones.engine.checks import check_checkpoint_fits  # noqa: E402
from backbones.engine.hooks import nonfinite_weights  # noqa: E402
from backbones.models.weights import model_state_dict, read_checkpoint  # noqa: E402
from backbones.utils.cli import add_common_args, run_cli  # noqa: E402
from backbones.utils.errors import CheckpointError, UserInputError  # noqa: E402
from backbones.utils.io import names  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out', help='also dump the raw predictions to this .pkl file')
    p.add_argument('--show-dir', help='write prediction overlays (PNG) into this folder')
    p.add_argument('--tta', action='store_true',
                   help="test-time augmentation: the config's tta_pipeline (multi-scale + flip) and tta_model")
    add_common_args(p)
    return p.parse_args(argv)


def enable_visualization(cfg, show_dir: str) -> None:
    """Turn the config's visualization hook on and point its output at ``show_dir``."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        return
    hook['draw'] = True
    hook['interval'] = 1  # every test image, not every 50th
    from mmengine.registry import HOOKS
    cls = HOOKS.get(hook['type'])
    if cls is not None and 'test_out_dir' in inspect.signature(cls.__init__).parameters:
        hook['test_out_dir'] = osp.abspath(show_dir)  # mmdet's hook writes there
    else:
        cfg.visualizer['save_dir'] = osp.abspath(show_dir)  # mmseg's writes via the visualizer


def check_out_file(out: str) -> str:
    """``--out`` is a .pkl file that can be written: checked before the test runs (not after it)."""
    if not out.endswith(('.pkl', '.pickle')):
        raise UserInputError(f'--out must be a .pkl file, got {out}')
    path = osp.abspath(osp.expanduser(out))
    if osp.isdir(path):
        raise UserInputError(f'--out {out} is a folder; name a .pkl file')
    folder = osp.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserInputError(f'--out {out}: cannot write to the folder {folder} ({e.strerror}); the test was '
                             'not run') from None
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = run_config(args)
    args.checkpoint = osp.expanduser(args.checkpoint)  # or a URL / hub name (read_checkpoint downloads it)
    out = check_out_file(args.out) if args.out else None
    ckpt = read_checkpoint(args.checkpoint)  # a training checkpoint or a plain state dict
    state = model_state_dict(ckpt)  # official / timm classifier files converted, as load_from does
    bad = nonfinite_weights(state)
    if bad:
        raise CheckpointError(f'{args.checkpoint} has non-finite weights ({len(bad)} tensors, e.g. {names(bad, 3)}): '
                              'it was saved by a diverged run; its scores would be meaningless')
    cfg.load_from = args.checkpoint
    preflight(cfg, splits=('test_dataloader',))
    if args.show_dir:
        enable_visualization(cfg, osp.expanduser(args.show_dir))
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise UserInputError(f'--tta: {args.config} defines no tta_model / tta_pipeline')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if out:
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
        cfg.test_evaluator = [*evaluators, dict(type='DumpResults', out_file_path=out)]
    cfg.setdefault('custom_hooks', [])
    cfg.custom_hooks.append(dict(type='ProgressBarHook'))
    runner = build_runner(cfg)
    check_checkpoint_fits(runner.model, {'state_dict': state}, args.checkpoint)
    try:
        metrics = runner.test()
    except Exception as e:  # noqa: BLE001 -- only running out of memory is re-worded; the rest goes on
        raise_if_out_of_memory(e, cfg, 'test_dataloader')
        raise
    if runner.rank == 0:
        print('metrics: ' + ', '.join(f'{k}={v:.4f}' if isinstance(v, float) else f'{k}={v}'
                                      for k, v in metrics.items()))
    end_process_group()
    return 0


if __name__ == '__main__':
    run_cli(main)

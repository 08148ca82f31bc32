"""A train / test run from the command line: the config (file, ``--cfg-options``, work dir, launcher,
our runner), the pre-flight checks, the Runner: ``run_train`` and ``run_test`` are the whole of ``tools/train.py``'s and
``tools/test.py``'s runs."""
import inspect
import os
import os.path as osp
import re
import tempfile

from mmengine.logging import print_log

from backbones.datasets.checks.coco import check_coco_datasets
from backbones.datasets.checks.common import check_data_folders, check_dataloaders
from backbones.datasets.checks.segmentation import check_seg_datasets
from backbones.engine.checks import (
    check_backbone,
    check_checkpoint_fits,
    check_optimizer,
    check_param_schedulers,
    check_resume_checkpoint,
)
from backbones.engine.hooks import nonfinite_weights
from backbones.engine.resume import check_resume_fits, resume_plan
from backbones.engine.work_dir import claim_work_dir
from backbones.models.weights import model_state_dict, read_checkpoint
from backbones.utils.config import check_added_keys, load_config
from backbones.utils.errors import CheckpointError, UserInputError
from backbones.utils.io import names


def run_train(args) -> int:
    """A training run of ``args`` (``tools/train.py``'s arguments), each step once: the config and its
    switches (``--amp``, ``--compile``), what it resumes from (``engine.resume.resume_plan``: ``--resume``,
    ``--auto-resume``, a requeue or restart) and the checks of that checkpoint, the pre-flight checks, the
    work dir claimed (``engine.work_dir.claim_work_dir``) before the Runner writes there, then the Runner's
    ``train``. Returns the exit status."""
    cfg = run_config(args)
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise UserInputError('--amp needs a GPU (MMEngine\'s AmpOptimWrapper runs on CUDA only)')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.compile and not isinstance(cfg.get('compile'), dict):  # (a dict of options from --cfg-options stays)
        cfg.compile = True
    plan = resume_plan(cfg.work_dir, args.resume, args.auto_resume, args.restart)
    if plan.path:
        ckpt = check_resume_checkpoint(plan.path)
        if not check_resume_fits(cfg, ckpt, plan.path, auto=plan.automatic):
            print_log(f'{plan.path} ends the run (train_cfg\'s last iteration / epoch): nothing is left to train',
                      logger='current')
            return 0
        cfg.resume, cfg.load_from = True, plan.path
    cfg.restart = plan.restart
    preflight(cfg, splits=('train_dataloader', 'val_dataloader'))
    claim_work_dir(cfg.work_dir, plan.resume, plan.restart)  # (a run in progress there: the lock's error)
    runner = build_runner(cfg)
    try:
        runner.train()
    except Exception as e:  # noqa: BLE001 -- only running out of memory is re-worded; the rest goes on
        raise_if_out_of_memory(e, cfg, 'train_dataloader')
        raise_if_batchnorm_got_one_value(e, cfg)
        raise
    end_process_group()
    return 0


def run_config(args):
    """The config of a train / test run: file + --cfg-options + work dir + launcher + our runner."""
    cfg = load_config(args.config, args.cfg_options, check_keys=False)  # preflight checks the added keys
    cfg.work_dir = osp.expanduser(args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0]))  # (a quoted '~/w' reaches us unexpanded)
    cfg.launcher = args.launcher
    cfg.setdefault('runner_type', 'RobustRunner')
    if args.launcher == 'slurm':  # each process's rank from srun's variables, before anything asks for it
        for name, slurm in (('RANK', 'SLURM_PROCID'), ('WORLD_SIZE', 'SLURM_NTASKS'),
                            ('LOCAL_RANK', 'SLURM_LOCALID')):
            if slurm in os.environ:
                os.environ.setdefault(name, os.environ[slurm])
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return cfg


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


def end_process_group() -> None:
    """Destroys the process group a distributed run started, while Python is still whole: left to interpreter
    shutdown, gloo's threads can end the process with "terminate called without an active exception" (exit
    134) after a run that finished."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_test(args) -> int:
    """A test run of ``args`` (``tools/test.py``'s arguments): the checkpoint read once and checked (finite,
    fits the model), the pre-flight checks, ``--show-dir`` / ``--tta`` / ``--out`` set in the config, then the
    Runner's ``test``; prints the metrics on rank 0. Returns the exit status."""
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


def preflight(cfg, splits) -> None:
    """Every check that can fail before the Runner is built, for the dataloaders ``splits``: the backbone's
    arguments, the dataloader settings, the data folders, the COCO files (and the evaluators' COCO files)
    and the segmentation sets; for training also the optimizer's values and the schedulers' begin / end.
    First the keys ``--cfg-options`` added: the classes they go to take them."""
    check_added_keys(cfg)
    check_backbone(cfg)
    if 'train_dataloader' in splits:
        check_optimizer(cfg)
        check_param_schedulers(cfg)
    check_dataloaders(cfg, splits=splits)
    check_data_folders(cfg, splits=splits)
    check_coco_datasets(cfg, splits=splits)
    check_seg_datasets(cfg, splits=splits)


# --------------------------------------------------------------------------------------------------
# Running out of memory: one line naming the batch size and what to lower
# --------------------------------------------------------------------------------------------------
_OOM_TEXT = ('out of memory', "can't allocate memory", 'cannot allocate memory', 'could not create a primitive',
             'std::bad_alloc', 'failed to map segment from shared object', 'is killed by signal: killed')


def out_of_memory(e: BaseException) -> str:
    """'' or what says that ``e`` is the machine running out of memory: ``MemoryError``, torch's
    ``OutOfMemoryError`` (CUDA), oneDNN's "could not create a primitive" and the allocators' messages, a shared
    library that cannot be mapped (``ulimit -v``), a dataloader worker SIGKILLed (the kernel's OOM killer)."""
    import errno

    import torch
    if isinstance(e, MemoryError):
        return 'MemoryError'
    oom = (getattr(torch, 'OutOfMemoryError', ()), getattr(torch.cuda, 'OutOfMemoryError', ()))
    if any(t and isinstance(e, t) for t in oom):
        return 'CUDA out of memory'
    if isinstance(e, OSError) and e.errno == errno.ENOMEM:
        return 'cannot allocate memory'
    text = str(e).lower()
    hit = next((t for t in _OOM_TEXT if t in text), None)
    if hit and isinstance(e, (RuntimeError, OSError, ImportError)):
        asked = re.search(r'tried to allocate (\d+) bytes', str(e))  # torch's CPU allocator
        if asked:
            return f"the CPU allocator could not get {int(asked.group(1)) / 2**20:.1f} MiB more"
        first = str(e).strip().splitlines()[0]
        first = first if len(first) <= 160 else first[:160].rsplit(' ', 1)[0] + ' ...'
        return first if hit != 'is killed by signal: killed' else f'{first} (the out-of-memory killer?)'
    return ''


def raise_if_out_of_memory(e: BaseException, cfg, split: str) -> None:
    """Turns an out-of-memory failure of a run of ``cfg`` into a ``UserInputError`` naming ``split``'s batch
    size and what to lower; returns (the caller re-raises) for anything else."""
    what = out_of_memory(e)
    if not what:
        return
    loader = cfg.get(split) or {}
    batch, workers = loader.get('batch_size'), loader.get('num_workers')
    import torch
    device = 'GPU' if torch.cuda.is_available() and 'cuda' in what.lower() else 'host'
    lr = (' (and the lr with it, or set auto_scale_lr.enable=True)' if split == 'train_dataloader' else '')
    amp = ', or train with --amp on a GPU' if split == 'train_dataloader' else ''
    raise UserInputError(f'out of {device} memory ({what}) at {split}.batch_size={batch} per process: lower '
                         f'{split}.batch_size{lr}, the input size or {split}.num_workers (now {workers}){amp}'
                         ) from None


_ONE_VALUE_PER_CHANNEL = 'Expected more than 1 value per channel when training'


def raise_if_batchnorm_got_one_value(e: BaseException, cfg) -> None:
    """torch's "Expected more than 1 value per channel when training" (a BatchNorm layer in training given
    one value per channel: one image per process meeting a 1x1 map, as in the pooling branch of UperNet's
    head) becomes a ``UserInputError`` saying why and what to do; returns (the caller re-raises) otherwise."""
    if not isinstance(e, ValueError) or _ONE_VALUE_PER_CHANNEL not in str(e):
        return
    batch = (cfg.get('train_dataloader') or {}).get('batch_size')
    size = re.search(r'input size (torch.Size\(\[[^\]]*\]\))', str(e))
    shape = f' (input {size.group(1)})' if size else ''
    raise UserInputError(
        f'train_dataloader.batch_size={batch} per process: a BatchNorm layer in training got one value per '
        f'channel{shape}, one image meeting a 1x1 map (the pooling branch of the decode head); batch '
        'statistics need at least 2 values: use train_dataloader.batch_size >= 2 per process (SyncBN, which '
        'pools the batch over GPU processes, falls back to BN on CPU)') from None

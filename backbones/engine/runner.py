"""``RobustRunner``: MMEngine's Runner with the config prepared (``prepare_config``) before it is built and
``MMEngineFixesHook`` among its hooks (the fixes of ``mmengine_fixes``, checkpoints as plain data), lr scaling
that counts gradient accumulation, a strict ``load_from`` (``load_from_partial=True`` loads what fits, with a
summary), the work dir claimed (``work_dir.claim_work_dir``) when training starts, and the guards of ``hooks``
(non-finite loss, SIGTERM) in every training run."""
import copy
import inspect
import signal
from functools import partial

from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import BaseLoop, Runner
from mmengine.runner.checkpoint import _load_checkpoint

from backbones.engine.distributed import fallback_syncbn_on_cpu, setup_cpu_distributed
from backbones.engine.hooks import HANDLED_SIGNALS, MMEngineFixesHook, SaveOnSignalHook
from backbones.engine.resume import find_resume_checkpoint
from backbones.engine.work_dir import check_work_dir_is_new, claim_work_dir  # noqa: F401 (re-exported)
from backbones.models.weights import model_state_dict, state_dict_mismatch
from backbones.utils.errors import CheckpointError
from backbones.utils.io import names

# Hooks every training run gets, whatever the config's custom_hooks list (a config that replaces the list
# would otherwise lose them): hooks.NonFiniteLossHook, hooks.SaveOnSignalHook.
GUARD_HOOKS = ('NonFiniteLossHook', 'SaveOnSignalHook')


def prepare_config(cfg) -> None:
    """Adapts ``cfg`` in place for this machine and adds the guard hooks: sets up CPU distributed runs,
    replaces SyncBN on CPU."""
    setup_cpu_distributed(cfg)
    fallback_syncbn_on_cpu(cfg)
    hooks = list(cfg.get('custom_hooks') or [])
    present = {str(h.get('type', '')).split('.')[-1] for h in hooks if isinstance(h, dict)}
    cfg.custom_hooks = hooks + [dict(type=t) for t in GUARD_HOOKS if t not in present]


@RUNNERS.register_module()
class RobustRunner(Runner):
    """MMEngine's Runner, built after ``prepare_config``, with ``MMEngineFixesHook`` whatever the config
    lists, lr auto-scaling that counts gradient accumulation and the work dir claimed when training starts."""

    @classmethod
    def from_cfg(cls, cfg) -> 'Runner':
        cfg = copy.deepcopy(cfg)
        prepare_config(cfg)
        return super().from_cfg(cfg)

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        """MMEngine's, and ``MMEngineFixesHook`` when the config does not list it: the one place the fixes are
        installed (``before_run``) and checkpoints made plain data (``before_save_checkpoint``)."""
        super().register_hooks(default_hooks, custom_hooks)
        if not any(isinstance(h, MMEngineFixesHook) for h in self._hooks):
            self.register_hook(MMEngineFixesHook())

    def save_checkpoint(self, *args, **kwargs) -> None:
        """MMEngine's, with the run's total batch in ``meta['train_batch']``: what a resume compares its own
        with (``backbones.engine.resume.check_resume_fits``)."""
        call = inspect.signature(Runner.save_checkpoint).bind(self, *args, **kwargs)
        loop = self._train_loop
        loader = getattr(loop, 'dataloader', None) if isinstance(loop, BaseLoop) else None
        if loader is not None and isinstance(getattr(loader, 'batch_size', None), int):
            call.arguments['meta'] = dict(call.arguments.get('meta') or {}, train_batch=dict(
                world_size=self.world_size, batch_size=loader.batch_size,
                accumulative_counts=accumulative_counts(self.optim_wrapper)))
        return Runner.save_checkpoint(*call.args, **call.kwargs)

    def build_optim_wrapper(self, optim_wrapper):
        """MMEngine's; with ``cfg.compile`` the optimizer's param groups are plain dicts (dynamo, torch 2.14,
        cannot trace an optimizer whose param groups are ``ConfigDict`` objects)."""
        wrapper = super().build_optim_wrapper(optim_wrapper)
        opt = getattr(wrapper, 'optimizer', None)
        if self.cfg.get('compile') and opt is not None:
            opt.param_groups[:] = [dict(g) for g in opt.param_groups]
        return wrapper

    def train(self):
        earlier = claim_work_dir(self.work_dir, self._resume, bool(self.cfg.get('restart', False)))
        if earlier:
            self.logger.warning(f'restart: training from scratch in {self.work_dir}, which holds an earlier run '
                                f'(last checkpoint: {earlier}); last_checkpoint points at this run once it saves')
        for hook in self.hooks:  # before the dataloader workers start, so that they inherit the handler
            if isinstance(hook, SaveOnSignalHook):
                hook.install()
        return super().train()

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        """MMEngine's, but the worker processes ignore SIGTERM, SIGUSR1 and SIGINT (the signals of
        ``hooks.SaveOnSignalHook``): torch's workers die of them, and the main process then fails at once
        ("DataLoader worker is killed by signal: Terminated") instead of saving a checkpoint; Slurm signals
        every process of a job step, a terminal's Ctrl-C its whole process group. A worker still ends with the
        main process."""
        loader = Runner.build_dataloader(dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
        if getattr(loader, 'num_workers', 0) > 0:
            loader.worker_init_fn = partial(_worker_ignores_sigterm, loader.worker_init_fn)
            _stop_workers_at_exit()
        return loader

    def load_or_resume(self) -> None:
        """MMEngine's, but resuming without a file finds the work dir's checkpoint even in a moved or copied
        work dir (``resume.find_resume_checkpoint``), and ``load_from`` (not resuming) loads strictly, or with
        ``load_from_partial=True`` only the tensors that fit, and says in one paragraph what was loaded."""
        if not self._has_loaded and self._resume and self._load_from is None:
            self._load_from = find_resume_checkpoint(self.work_dir)
            if self._load_from is None:
                self.logger.info(f'resume: {self.work_dir} holds no checkpoint; training from scratch')
                return None
        if self._has_loaded or self._load_from is None or self._resume:
            return super().load_or_resume()
        filename = self._load_from
        checkpoint = _load_checkpoint(filename, map_location='cpu')
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):  # DDP, --tta: the weights of the inner model
            model = model.module
        try:
            src = model_state_dict(checkpoint)
        except CheckpointError as e:
            raise CheckpointError(f'load_from={filename}: {e}') from None
        own = model.state_dict()
        partial = bool(self.cfg.get('load_from_partial', False))
        problems = state_dict_mismatch(own, src, n=4)
        if problems and not partial:
            raise CheckpointError(f'load_from={filename} does not fit the model (another arch or config?): '
                                  f'{problems}; to load only the tensors that fit, set load_from_partial=True '
                                  '(docs/reliability.md)')
        if partial:
            fits = {k: v for k, v in src.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
            model.load_state_dict(fits, strict=False)
            missing = [k for k in own if k not in src]
            shapes = [k for k in src if k in own and k not in fits]
            extra = [k for k in src if k not in own]
            self.logger.warning(
                f'load_from={filename} loaded partially (load_from_partial=True): {len(fits)} of the model\'s '
                f'{len(own)} tensors loaded; {len(missing)} not in the checkpoint (left as initialised'
                + (f', e.g. {names(missing, 3)}' if missing else '') + f'); {len(shapes)} of another shape '
                + (f'(e.g. {names(shapes, 3)}) ' if shapes else '') + f'left as initialised; {len(extra)} '
                'checkpoint tensors not in the model, ignored'
                + (f' (e.g. {names(extra, 3)})' if extra else ''))
        else:
            model.load_state_dict(src, strict=True)
            self.logger.info(f'Load checkpoint from {filename}')
        self._has_loaded = True

    def scale_lr(self, optim_wrapper, auto_scale_lr=None) -> None:
        """Linear scaling by ``world_size x batch_size x accumulative_counts / base_batch_size``."""
        accum = accumulative_counts(optim_wrapper)
        if auto_scale_lr and auto_scale_lr.get('enable', False) and accum > 1:
            base = auto_scale_lr['base_batch_size']
            self.logger.info(f'gradient accumulation over {accum} iterations: the effective batch is '
                             f'world size x batch size x {accum}; comparing world size x batch size with '
                             f'base_batch_size / {accum} = {base / accum:g}')
            auto_scale_lr = dict(auto_scale_lr, base_batch_size=base / accum)
        return Runner.scale_lr(self, optim_wrapper, auto_scale_lr)

    def build_train_loop(self, loop):
        """MMEngine's, and a notice in the log when the training set holds fewer samples than one batch of
        all processes: an infinite sampler then repeats samples within a batch (one image at batch 8 trains on
        8 copies)."""
        loop = super().build_train_loop(loop)
        loader = getattr(loop, 'dataloader', None)
        batch = getattr(loader, 'batch_size', None)
        try:
            size = len(loader.dataset)
        except (AttributeError, TypeError):
            return loop
        if isinstance(batch, int) and size < batch * self.world_size:
            per = f'{batch} per process x {self.world_size} processes' if self.world_size > 1 else f'{batch}'
            infinite = type(getattr(loader, 'sampler', None)).__name__ == 'InfiniteSampler'
            what = ('each batch repeats samples' if infinite or self.world_size > 1
                    else 'each epoch is one short batch')
            self.logger.warning(f'train_dataloader: the data set holds {size} sample{"s" * (size != 1)}, '
                                f'fewer than one batch ({per}): {what}; lower train_dataloader.batch_size or '
                                'add data')
        return loop


def _worker_ignores_sigterm(init_fn, worker_id: int) -> None:
    for sig in HANDLED_SIGNALS | {signal.SIGTERM}:  # (SaveOnSignalHook's signals; the main process saves)
        signal.signal(sig, signal.SIG_IGN)
    if init_fn is not None:
        init_fn(worker_id)


_AT_EXIT = []


def _stop_workers_at_exit() -> None:
    """At exit, multiprocessing stops the daemonic children still alive (dataloader workers) with SIGTERM,
    which these workers ignore: stop them with SIGKILL first (registered after multiprocessing's own exit
    handler, so run before it). They hold no state; a worker would otherwise end with the main process too."""
    if _AT_EXIT:
        return
    import atexit
    import multiprocessing

    def stop():
        children = [c for c in multiprocessing.active_children() if c.daemon]
        if children:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler would raise for each of them
        for child in children:
            child.kill()
            child.join(timeout=5)

    atexit.register(stop)
    _AT_EXIT.append(stop)


def accumulative_counts(optim_wrapper) -> int:
    return int(getattr(optim_wrapper, '_accumulative_counts', 1) or 1)

"""``RobustRunner``: MMEngine's Runner with the fixes of ``mmengine_fixes`` installed and the config
prepared (``prepare_config``) before it is built, and lr scaling that counts gradient accumulation."""
import copy

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from backbones.engine.mmengine_fixes import (
    fallback_syncbn_on_cpu,
    from_plain,
    install_mmengine_fixes,
    lock_work_dir,
    setup_cpu_distributed,
    to_plain,
    trust_run_checkpoints,
)


def prepare_config(cfg) -> None:
    """Installs the fixes and adapts ``cfg`` in place: trusts the run's checkpoints, sets up CPU
    distributed runs, replaces SyncBN on CPU."""
    install_mmengine_fixes()
    trust_run_checkpoints(cfg.get('work_dir'), cfg.get('load_from'))
    setup_cpu_distributed(cfg)
    fallback_syncbn_on_cpu(cfg)


@RUNNERS.register_module()
class RobustRunner(Runner):
    """MMEngine's Runner, built after ``prepare_config`` (the fixes above), with lr auto-scaling that
    counts gradient accumulation; otherwise unchanged."""

    @classmethod
    def from_cfg(cls, cfg) -> 'Runner':
        cfg = copy.deepcopy(cfg)
        prepare_config(cfg)
        return super().from_cfg(cfg)

    def call_hook(self, fn_name: str, **kwargs) -> None:
        """MMEngine's, and: a checkpoint is made plain data after every hook added to it (``to_plain``:
        ``torch.load(weights_only=True)`` reads it), and rebuilt before any hook reads a loaded one."""
        if fn_name == 'after_load_checkpoint':
            from_plain(kwargs['checkpoint'])
        super().call_hook(fn_name, **kwargs)
        if fn_name == 'before_save_checkpoint':
            to_plain(kwargs['checkpoint'])

    def train(self):
        lock_work_dir(self.work_dir)  # tools/train.py took it before the Runner wrote anything
        return super().train()

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


def accumulative_counts(optim_wrapper) -> int:
    return int(getattr(optim_wrapper, '_accumulative_counts', 1) or 1)

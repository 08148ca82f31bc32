"""``ClsRunner``: MMEngine's Runner with learning-rate auto-scaling that counts gradient accumulation.

MMEngine 0.10's ``Runner.scale_lr`` takes the real batch as ``world_size x batch_size`` and ignores
``optim_wrapper.accumulative_counts``, so the paper's 4096 (8 GPUs x 128 x 4 accumulation steps) would
count as 1024 and the lr would be scaled down 4x. The classification configs use this runner
(``runner_type='train_cls.ClsRunner'``); everything else is MMEngine's.
"""
from mmengine.runner import Runner

from .registry import RUNNERS


def accumulative_counts(optim_wrapper) -> int:
    return int(getattr(optim_wrapper, '_accumulative_counts', 1) or 1)


@RUNNERS.register_module()
class ClsRunner(Runner):

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

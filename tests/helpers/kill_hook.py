"""Hooks for the fault tests: ``KillAfterIterHook`` sends a signal (SIGKILL unless told) to its own training
process right after iteration ``at_iter`` (in process ``rank`` only, or in every process).

Imported by the test configs through ``custom_imports`` (tests/ is a package; tools put the repo root
on sys.path). Its priority is the lowest, so the CheckpointHook of that iteration has already run.
"""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAfterIterHook(Hook):
    priority = 'LOWEST'

    def __init__(self, at_iter: int, rank=None, sig='SIGKILL'):
        self.at_iter, self.rank, self.sig = at_iter, rank, getattr(signal, sig)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter and self.rank in (None, runner.rank):
            os.kill(os.getpid(), self.sig)


@HOOKS.register_module()
class NaNLossHook(Hook):
    """Makes the loss of iteration ``at_iter`` (1-based) non-finite in process ``rank`` only (None: every
    process): a divergence that one rank sees first. Its priority is the highest, so it wraps the model's
    ``parse_losses`` before the NonFiniteLossHook wraps it in turn."""
    priority = 'HIGHEST'

    def __init__(self, at_iter: int, rank=None):
        self.at_iter, self.rank = at_iter, rank

    def before_train(self, runner):
        from mmengine.model import is_model_wrapper
        module = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parse = module.parse_losses

        def parse_losses(losses):
            loss, log_vars = parse(losses)
            if runner.iter + 1 == self.at_iter and self.rank in (None, runner.rank):
                loss = loss * float('nan')
                log_vars['loss'] = loss
            return loss, log_vars

        module.parse_losses = parse_losses

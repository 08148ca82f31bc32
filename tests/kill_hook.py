"""A hook for the fault tests: SIGKILLs its own training process right after iteration ``at_iter``.

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

    def __init__(self, at_iter: int):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)

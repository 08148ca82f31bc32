"""``ProgressBarHook``: a progress bar with ETA over the test set, for ``tools/test.py``."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.utils import ProgressBar


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """A progress bar (with ETA) over the test set's batches on rank 0, for ``tools/test.py``."""

    priority = 'LOW'

    def before_test_epoch(self, runner):
        self._bar = ProgressBar(len(runner.test_dataloader)) if runner.rank == 0 else None

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._bar is not None:
            self._bar.update()

    def after_test_epoch(self, runner, metrics=None):
        if self._bar is not None:
            print()

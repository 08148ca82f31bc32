"""``RNGStateHook``: every rank's python / numpy / torch RNG states in the checkpoint, restored on resume
(MMEngine's checkpoint holds none, so a resumed run with drop path, dropout or random augmentation
diverged from an uninterrupted one)."""
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop, IterBasedTrainLoop


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves every rank's RNG states in the checkpoint and restores them on resume (exact resume).

    MMEngine saves checkpoints on rank 0 only, so the states are gathered from all ranks at the end of
    each iteration / epoch, just before CheckpointHook (priority VERY_LOW) runs; a few kB per rank.
    """

    priority = 'LOW'

    def __init__(self):
        self._states = None

    @staticmethod
    def _local_state() -> dict:
        return dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                    cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

    def _gather(self) -> None:
        self._states = all_gather_object(self._local_state())  # one entry per rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._gather()

    def after_train_epoch(self, runner) -> None:
        self._gather()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # (numpy's state holds an array: MMEngineFixesHook writes it as plain data)
        checkpoint['rng_states'] = self._states if self._states is not None else [self._local_state()]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_states')
        rank, world = get_dist_info()
        if not states:
            return
        if len(states) != world:
            if not isinstance(runner._train_loop, BaseLoop):  # testing: nothing is resumed
                return
            batch = getattr(runner.train_loop.dataloader, 'batch_size', None)
            total = (f'; the total batch changes from {len(states)} x {batch} = {len(states) * batch} to '
                     f'{world} x {batch} = {world * batch} images per iteration (lr and schedule stay as '
                     'configured)') if batch else ''
            runner.logger.warning(f'resuming a run of {len(states)} processes with {world}{total}; '
                                  'RNG states not restored, the resumed run will not be bitwise exact')
            return
        self._pending = states[rank]
        self._restore(self._pending)

    def before_train_epoch(self, runner) -> None:
        # An iteration-based loop now replays the data of the iterations done before the checkpoint
        # (MMEngine's "Advance dataloader" step), which draws random augmentations again: restore the
        # RNG states once more after that replay, right before the first new batch is fetched.
        state, self._pending = getattr(self, '_pending', None), None
        loop = runner.train_loop
        if state is not None and isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfter(loop.dataloader_iterator, loop.iter,
                                                     lambda: self._restore(state))

    @staticmethod
    def _restore(state: dict) -> None:
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if state['cuda'] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreAfter:
    """Iterator proxy: calls ``restore`` after the first ``n`` items were taken."""

    def __init__(self, iterator, n: int, restore):
        self._it, self._left, self._restore = iterator, n, restore

    def __next__(self):
        item = next(self._it)
        self._left -= 1
        if self._left == 0:
            self._restore()
        return item

    def __getattr__(self, name):
        return getattr(self._it, name)

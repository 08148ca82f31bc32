"""``NonFiniteLossHook``: a training run stops at the first non-finite loss (or skips such steps, if the
config says so), before the optimizer applies it; non-finite weights are never validated or saved."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

from backbones.engine.hooks.utils import checkpoint_hook, last_checkpoint, nonfinite_weights, world_any
from backbones.utils.errors import CheckpointError, TrainingDivergedError, UserInputError
from backbones.utils.io import names


def _fmt(v) -> str:
    v = float(v.detach().float().mean()) if isinstance(v, torch.Tensor) else float(v)
    return f'{v:.4g}'


def _lr(runner) -> str:
    try:
        lrs = runner.optim_wrapper.get_lr()
    except Exception:  # noqa: BLE001 -- an optimizer wrapper without get_lr: the message goes without
        return '?'
    values = sorted({float(x) for v in lrs.values() for x in (v if isinstance(v, (list, tuple)) else [v])})
    return f'{values[-1]:.4g}' if len(values) == 1 else f'{values[0]:.4g}..{values[-1]:.4g}'


_ADVICE = ('lower the learning rate (optim_wrapper.optimizer.lr) or clip gradients (optim_wrapper.clip_grad); '
           "to skip such steps instead, set nonfinite_loss.action='skip' (docs/reliability.md)")


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stops training at the first non-finite loss, before the optimizer applies the step.

    The check sits in the model's ``parse_losses`` (the loss terms are known, no backward has run yet) and
    the decision is shared by all processes. ``action='stop'`` (the default) raises
    ``TrainingDivergedError`` naming the iteration, the loss terms and the lr; ``'skip'`` drops the step
    (no backward, no optimizer step; with gradient accumulation, the window's update) and logs a warning,
    but stops after ``max_skips`` non-finite losses in a row. Settings come from the config's
    ``nonfinite_loss`` dict (``configs/_base_/default_runtime.py``), overridden by the hook's own arguments.

    The AMP loss scaler's skipped steps (a finite loss whose scaled gradients overflowed) are not
    divergence: the loss is checked, not the gradients. The weights are checked whenever they are about
    to be saved or validated; non-finite weights (an overflow with a finite loss) stop the run the same
    way, before the CheckpointHook rotates or writes anything, so the last finite checkpoint is never
    replaced. A test run refuses a checkpoint with non-finite weights.
    """

    priority = 'ABOVE_NORMAL'  # after_train_iter before the CheckpointHook (VERY_LOW)

    def __init__(self, action=None, max_skips=None):
        self._args = dict(action=action, max_skips=max_skips)
        self.action, self.max_skips = 'stop', 10
        self._skip_step = False
        self._in_a_row = self.skipped = 0

    def _settings(self, runner) -> None:
        opts = dict(action='stop', max_skips=10)
        opts.update((runner.cfg.get('nonfinite_loss') if runner.cfg is not None else None) or {})
        opts.update({k: v for k, v in self._args.items() if v is not None})
        if opts['action'] not in ('stop', 'skip'):
            raise UserInputError(f"nonfinite_loss.action must be 'stop' or 'skip', got {opts['action']!r}")
        if isinstance(opts['max_skips'], bool) or not isinstance(opts['max_skips'], int) or opts['max_skips'] < 0:
            raise UserInputError(f"nonfinite_loss.max_skips must be an integer >= 0, got {opts['max_skips']!r}")
        self.action, self.max_skips = opts['action'], opts['max_skips']

    def before_train(self, runner) -> None:
        self._settings(runner)
        module = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parse_losses = module.parse_losses

        def checked_parse_losses(losses):
            loss, log_vars = parse_losses(losses)
            self._check_loss(runner, loss, log_vars)
            return loss, log_vars

        module.parse_losses = checked_parse_losses
        optim_wrapper = runner.optim_wrapper
        if isinstance(optim_wrapper, OptimWrapper):  # (an OptimWrapperDict's model has its own train_step)
            update_params = optim_wrapper.update_params

            def guarded_update_params(loss, *args, **kwargs):
                if not self._skip_step:
                    return update_params(loss, *args, **kwargs)
                self._skip_step = False
                optim_wrapper._inner_count += 1  # the accumulation window keeps its length
                if optim_wrapper.should_update():  # drop the window's gradients, do not step
                    optim_wrapper.zero_grad()

            optim_wrapper.update_params = guarded_update_params

    def _check_loss(self, runner, loss, log_vars) -> None:
        local = not bool(torch.isfinite(loss.detach()).all())
        if not world_any(local, loss.device):
            self._in_a_row = 0
            return
        terms = ', '.join(f'{k}={_fmt(v)}' for k, v in log_vars.items() if 'loss' in k) or f'loss={_fmt(loss)}'
        it = runner.iter + 1
        if self.action == 'skip' and self._in_a_row < self.max_skips:
            self._in_a_row += 1
            self.skipped += 1
            self._skip_step = True
            runner.logger.warning(f'iteration {it}: non-finite loss ({terms if local else "in another process"}; '
                                  f'lr {_lr(runner)}): step skipped ({self._in_a_row} in a row, '
                                  f'{self.skipped} in all; nonfinite_loss.max_skips={self.max_skips})')
            return
        row = (f' after {self._in_a_row} skipped steps in a row (nonfinite_loss.max_skips={self.max_skips})'
               if self.action == 'skip' else '')
        shown = terms if local else f'in another process; here {terms}'
        msg = (f'training diverged at iteration {it}: non-finite loss ({shown}; lr {_lr(runner)}){row}; '
               f'stopped before this step, {last_checkpoint(runner)}; {_ADVICE}')
        runner.logger.error(msg)
        raise TrainingDivergedError(msg)

    def _check_weights(self, runner, when: str) -> None:
        module = runner.model.module if is_model_wrapper(runner.model) else runner.model
        bad = nonfinite_weights(module.state_dict())  # DDP keeps the weights equal: every rank decides alike
        if bad:
            msg = (f'training diverged: the weights are not finite {when} ({len(bad)} tensors, e.g. '
                   f'{names(bad, 3)}; lr {_lr(runner)}) although the loss was finite (a gradient overflowed); '
                   f'stopped before saving or validating them, {last_checkpoint(runner)}; {_ADVICE}')
            runner.logger.error(msg)
            raise TrainingDivergedError(msg)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        ckpt = checkpoint_hook(runner)
        if ckpt is not None and not ckpt.by_epoch and (
                ckpt.every_n_train_iters(runner, ckpt.interval, ckpt.save_begin)
                or (ckpt.save_last and ckpt.is_last_train_iter(runner))):
            self._check_weights(runner, f'after iteration {runner.iter + 1}')

    def after_train_epoch(self, runner) -> None:
        self._check_weights(runner, f'after epoch {runner.epoch + 1}')

    def before_val_epoch(self, runner) -> None:
        if isinstance(runner._train_loop, BaseLoop):  # validation inside a training run
            self._check_weights(runner, f'at iteration {runner.iter}')
        else:
            self.before_test_epoch(runner)

    def before_test_epoch(self, runner) -> None:
        module = runner.model.module if is_model_wrapper(runner.model) else runner.model
        bad = nonfinite_weights(module.state_dict())
        if bad:
            src = runner._load_from or 'the model'
            raise CheckpointError(f'{src} has non-finite weights ({len(bad)} tensors, e.g. {names(bad, 3)}): '
                                  'it was saved by a diverged run; its scores would be meaningless')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """The last guard (rank 0; the checks above run on every rank before any save)."""
        bad = nonfinite_weights(checkpoint.get('state_dict') or {})
        if bad:
            msg = (f'refusing to save a checkpoint with non-finite weights ({names(bad, 3)}); '
                   f'{last_checkpoint(runner)}; {_ADVICE}')
            runner.logger.error(msg)
            raise TrainingDivergedError(msg)

    def after_train(self, runner) -> None:
        if self.skipped:
            runner.logger.warning(f'{self.skipped} training steps were skipped for a non-finite loss '
                                  "(nonfinite_loss.action='skip')")

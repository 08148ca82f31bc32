"""MMEngine hooks of the suite (registered in MMEngine's root HOOKS registry on import).

- ``RNGStateHook``: MMEngine's checkpoint holds no RNG state, so a resumed run with drop path (or dropout,
  or random augmentation) diverged from an uninterrupted one. Every rank's python/numpy/torch RNG states
  are saved in the checkpoint and restored on resume (``configs/_base_/default_runtime.py`` adds it).
- ``ProgressBarHook``: a progress bar with ETA over the test set, for ``tools/test.py``.
- ``NonFiniteLossHook``: a training run stops at the first non-finite loss (or skips such steps, if the
  config says so), before the optimizer applies it; non-finite weights are never validated or saved.
- ``SaveOnSignalHook``: SIGTERM (Slurm, Kubernetes, torchrun), SIGUSR1 (``sbatch --signal=USR1@90``) and
  SIGINT (Ctrl-C) end the current iteration, save a checkpoint that ``--resume`` continues from, and exit
  128 + n.

``RobustRunner`` adds the last two to any config that lacks them (``backbones.engine.runner``); the
configs list them in ``configs/_base_/default_runtime.py`` so that a plain MMEngine Runner has them too.
docs/reliability.md describes the guards and their opt-outs.
"""
import os.path as osp
import random
import signal
import threading

import numpy as np
import torch
from mmengine.dist import all_gather_object, all_reduce, barrier, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop, IterBasedTrainLoop
from mmengine.utils import ProgressBar

from backbones.engine.mmengine_fixes import (
    from_plain,
    install_mmengine_fixes,
    to_plain,
)
from backbones.utils.errors import CheckpointError, TrainingDivergedError, UserInputError
from backbones.utils.io import names


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
        # numpy's state holds an array: written as plain data (torch.load(weights_only=True) reads it)
        states = self._states if self._states is not None else [self._local_state()]
        checkpoint['rng_states'] = to_plain({'rng_states': states})['rng_states']

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = from_plain(checkpoint.get('rng_states'))
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


@HOOKS.register_module()
class MMEngineFixesHook(Hook):
    """Installs the fixes when a run starts (any Runner), before it loads ``load_from`` / resumes (the
    checkpoint loader that reads every file safely, ``models.weights.read_checkpoint``).

    Checkpoints are written as plain data (``to_plain``: MMEngine's message hub and numpy values as tagged
    dicts of tensors and numbers), so that ``torch.load(weights_only=True)`` reads them: ``mmseg.apis
    .init_model``, ``mmdet.apis.init_detector``, the inferencers and the analysis tools load them without
    anything of ours. Loading one first rebuilds the objects (``from_plain``), before MMEngine reads them:
    this hook runs first of all hooks; ``RobustRunner`` also does it around every hook, so a hook of lower
    priority that adds numpy data still writes plain data."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        install_mmengine_fixes()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        to_plain(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from_plain(checkpoint)

# --------------------------------------------------------------------------------------------------
# Divergence: stop at the first non-finite loss, never save non-finite weights
# --------------------------------------------------------------------------------------------------
def _world_max(value: int) -> int:
    """The largest of every process's ``value`` (one tiny all-reduce when distributed)."""
    if get_dist_info()[1] == 1:
        return int(value)
    t = torch.tensor([float(value)])
    all_reduce(t, op='max')
    return int(t.item())


def _world_any(flag: bool, device=None) -> bool:
    """``flag`` or'ed over all processes (one tiny all-reduce when distributed), so every rank decides
    alike and none waits in a collective for a rank that stopped."""
    if get_dist_info()[1] == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    all_reduce(t, op='max')
    return bool(t.item() > 0)


def nonfinite_weights(state_dict: dict) -> list:
    """The names of the floating-point tensors of ``state_dict`` holding an inf or a nan (one sync when all
    are finite)."""
    floats = [(k, v) for k, v in state_dict.items()
              if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel()]
    if not floats:
        return []
    device = floats[0][1].device
    ok = torch.stack([torch.isfinite(v).all().to(device) for _, v in floats])
    if bool(ok.all()):
        return []
    return [k for (k, _), good in zip(floats, ok.tolist()) if not good]


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


def _last_checkpoint(runner) -> str:
    path = osp.join(runner.work_dir, 'last_checkpoint')
    if osp.isfile(path):
        with open(path) as f:
            return f'the last checkpoint, {osp.basename(f.read().strip())}, is finite'
    return 'no checkpoint was saved before'


def _checkpoint_hook(runner):
    return next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)


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
        if not _world_any(local, loss.device):
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
               f'stopped before this step, {_last_checkpoint(runner)}; {_ADVICE}')
        runner.logger.error(msg)
        raise TrainingDivergedError(msg)

    def _check_weights(self, runner, when: str) -> None:
        module = runner.model.module if is_model_wrapper(runner.model) else runner.model
        bad = nonfinite_weights(module.state_dict())  # DDP keeps the weights equal: every rank decides alike
        if bad:
            msg = (f'training diverged: the weights are not finite {when} ({len(bad)} tensors, e.g. '
                   f'{names(bad, 3)}; lr {_lr(runner)}) although the loss was finite (a gradient overflowed); '
                   f'stopped before saving or validating them, {_last_checkpoint(runner)}; {_ADVICE}')
            runner.logger.error(msg)
            raise TrainingDivergedError(msg)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        ckpt = _checkpoint_hook(runner)
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
                   f'{_last_checkpoint(runner)}; {_ADVICE}')
            runner.logger.error(msg)
            raise TrainingDivergedError(msg)

    def after_train(self, runner) -> None:
        if self.skipped:
            runner.logger.warning(f'{self.skipped} training steps were skipped for a non-finite loss '
                                  "(nonfinite_loss.action='skip')")


# --------------------------------------------------------------------------------------------------
# SIGTERM, SIGUSR1, SIGINT: save and stop at the end of the iteration
# --------------------------------------------------------------------------------------------------
DEFAULT_SIGNALS = ('SIGTERM', 'SIGUSR1', 'SIGINT')
# The signals the installed hooks handle: dataloader workers ignore them (``RobustRunner.build_dataloader``),
# so that a signal sent to the whole process group (Slurm, a terminal's Ctrl-C) stops only the main process.
HANDLED_SIGNALS = {getattr(signal, name) for name in DEFAULT_SIGNALS}


def signal_numbers(signals) -> tuple:
    """``signals`` (names such as ``'SIGUSR1'`` / ``'USR1'``, or numbers) as ``signal.Signals``; anything else
    is a ``UserInputError`` naming it. SIGKILL and SIGSTOP cannot be caught and are refused too."""
    if isinstance(signals, (str, int)):
        signals = [signals]
    out = []
    for s in signals or ():
        try:
            if isinstance(s, str):
                name = s.upper() if s.upper().startswith('SIG') else 'SIG' + s.upper()
                sig = signal.Signals[name]
            else:
                sig = signal.Signals(int(s))
        except (KeyError, ValueError, TypeError):
            raise UserInputError(f'SaveOnSignalHook(signals=...): {s!r} is not a signal (use names such as '
                                 f'{", ".join(DEFAULT_SIGNALS)})') from None
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            raise UserInputError(f'SaveOnSignalHook(signals=...): {sig.name} cannot be caught')
        if sig not in out:
            out.append(sig)
    return tuple(out)


@HOOKS.register_module()
class SaveOnSignalHook(Hook):
    """On SIGTERM (Slurm's preemption and time limit, Kubernetes, torchrun's shutdown), SIGUSR1 (Slurm's
    ``--signal=USR1@<seconds>`` warning before the time limit) or SIGINT (Ctrl-C, and torchrun passing on a
    Ctrl-C), finishes the current training iteration, saves ``iter_<n>.pth`` (and points
    ``last_checkpoint`` at it), logs what it did in one line and exits 128 + n (143, 138, 130: what the signal
    itself would give), so that ``tools/train.py CONFIG --resume`` continues from that iteration. When the
    save is impossible (non-finite weights, a full disk), the log says so and names the last checkpoint.
    ``signals`` sets which signals do this (names or numbers).

    The handler is installed before the dataloader workers start (``RobustRunner.train``; a plain Runner:
    ``before_train``, after its first workers started) so they inherit it and survive a signal sent to the
    whole process group. A second signal of the same kind acts at once (as if the hook were not there). All
    processes agree on the iteration to stop at (a one-number all-reduce each iteration). An epoch-based loop
    saves mid-epoch too; ``--resume`` then restarts that epoch from its first batch (MMEngine's epoch loop
    cannot skip into an epoch), which the log says.
    """

    priority = 'LOWEST'  # after the CheckpointHook of the same iteration

    def __init__(self, signals=DEFAULT_SIGNALS):
        self.signals = signal_numbers(signals)
        self._received = None
        self._installed = False

    def install(self) -> None:
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._previous = {}
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        HANDLED_SIGNALS.update(self.signals)
        self._installed = True

    def _handle(self, signum, frame) -> None:
        if self._received is None:
            self._received = signum
        previous = self._previous.get(signum)
        # a second one acts at once
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    def before_train(self, runner) -> None:
        self.install()

    def after_train(self, runner) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            for sig, previous in self._previous.items():
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            self._installed = False

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        signum = _world_max(self._received or 0)
        if not signum:
            return
        name = signal.Signals(signum).name
        if self._received is None:
            name += ' (in another process)'
        it = runner.iter + 1
        ckpt = _checkpoint_hook(runner)
        out_dir = ckpt.out_dir if ckpt is not None and getattr(ckpt, 'out_dir', None) else runner.work_dir
        filename = f'iter_{it}.pth'
        path = osp.join(out_dir, filename)
        epoch_note = ''
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            epoch_note = (f' (epoch-based loop: --resume restarts epoch {runner.epoch + 1} from its first batch, '
                          'counting on from this iteration)')
        saved_here = ckpt is not None and getattr(ckpt, 'last_ckpt', None) and \
            osp.basename(str(ckpt.last_ckpt)) == filename and osp.isfile(path)
        module = runner.model.module if is_model_wrapper(runner.model) else runner.model
        bad = nonfinite_weights(module.state_dict())
        if saved_here:
            what = f'saved {path}'
        elif bad:
            what = (f'could NOT save a checkpoint: the weights are not finite ({names(bad, 3)}); '
                    f'{_last_checkpoint(runner)}')
        else:
            try:
                runner.save_checkpoint(out_dir, filename, by_epoch=False)
                if runner.rank == 0:
                    with open(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
                        f.write(path)
                what = f'saved {path}'
            except Exception as e:  # noqa: BLE001 -- say what happened, whatever it was, and still stop
                what = f'could NOT save a checkpoint ({type(e).__name__}: {e}); {_last_checkpoint(runner)}'
        barrier()
        if what.startswith('saved'):
            what += f'; --resume continues from it{epoch_note}'
        runner.logger.warning(f'{name} received: stopped after iteration {it}; {what}')
        self.after_train(runner)  # the handlers as they were (code that catches the exit goes on without them)
        raise SystemExit(128 + signum)

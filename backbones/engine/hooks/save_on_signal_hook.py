"""``SaveOnSignalHook``: SIGTERM (Slurm, Kubernetes, torchrun), SIGUSR1 (``sbatch --signal=USR1@90``) and
SIGINT (Ctrl-C) end the current iteration, save a checkpoint that ``--resume`` continues from, and exit
128 + n."""
import os.path as osp
import signal
import threading

from mmengine.dist import barrier
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from backbones.engine.hooks.utils import checkpoint_hook, last_checkpoint, nonfinite_weights, world_max
from backbones.utils.errors import UserInputError
from backbones.utils.io import names

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
        signum = world_max(self._received or 0)
        if not signum:
            return
        name = signal.Signals(signum).name
        if self._received is None:
            name += ' (in another process)'
        it = runner.iter + 1
        ckpt = checkpoint_hook(runner)
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
                    f'{last_checkpoint(runner)}')
        else:
            try:
                runner.save_checkpoint(out_dir, filename, by_epoch=False)
                if runner.rank == 0:
                    with open(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
                        f.write(path)
                what = f'saved {path}'
            except Exception as e:  # noqa: BLE001 -- say what happened, whatever it was, and still stop
                what = f'could NOT save a checkpoint ({type(e).__name__}: {e}); {last_checkpoint(runner)}'
        barrier()
        if what.startswith('saved'):
            what += f'; --resume continues from it{epoch_note}'
        runner.logger.warning(f'{name} received: stopped after iteration {it}; {what}')
        self.after_train(runner)  # the handlers as they were (code that catches the exit goes on without them)
        raise SystemExit(128 + signum)

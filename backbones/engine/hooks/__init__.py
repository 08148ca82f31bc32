"""MMEngine hooks of the suite (registered in MMEngine's root HOOKS registry on import), one per module.

- ``RNGStateHook`` (``rng_state_hook.py``): MMEngine's checkpoint holds no RNG state, so a resumed run with
  drop path (or dropout, or random augmentation) diverged from an uninterrupted one. Every rank's
  python/numpy/torch RNG states are saved in the checkpoint and restored on resume
  (``configs/_base_/default_runtime.py`` adds it).
- ``ProgressBarHook`` (``progress_bar_hook.py``): a progress bar with ETA over the test set, for
  ``tools/test.py``.
- ``MMEngineFixesHook`` (``mmengine_fixes_hook.py``): the fixes of ``backbones.engine.mmengine_fixes`` for
  any Runner (mmseg's / mmdet's own tools too), and checkpoints written as plain data.
- ``NonFiniteLossHook`` (``nonfinite_loss_hook.py``): a training run stops at the first non-finite loss (or
  skips such steps, if the config says so), before the optimizer applies it; non-finite weights are never
  validated or saved.
- ``SaveOnSignalHook`` (``save_on_signal_hook.py``): SIGTERM (Slurm, Kubernetes, torchrun), SIGUSR1
  (``sbatch --signal=USR1@90``) and SIGINT (Ctrl-C) end the current iteration, save a checkpoint that
  ``--resume`` continues from, and exit 128 + n.

``utils.py`` holds what the last two share. ``RobustRunner`` adds the last two to any config that lacks
them (``backbones.engine.runner``); the configs list them in ``configs/_base_/default_runtime.py`` so that
a plain MMEngine Runner has them too. docs/reliability.md describes the guards and their opt-outs.
"""
from backbones.engine.hooks.mmengine_fixes_hook import MMEngineFixesHook
from backbones.engine.hooks.nonfinite_loss_hook import NonFiniteLossHook
from backbones.engine.hooks.progress_bar_hook import ProgressBarHook
from backbones.engine.hooks.rng_state_hook import RNGStateHook
from backbones.engine.hooks.save_on_signal_hook import (
    DEFAULT_SIGNALS,
    HANDLED_SIGNALS,
    SaveOnSignalHook,
    signal_numbers,
)
from backbones.engine.hooks.utils import nonfinite_weights

__all__ = ['DEFAULT_SIGNALS', 'HANDLED_SIGNALS', 'MMEngineFixesHook', 'NonFiniteLossHook', 'ProgressBarHook',
           'RNGStateHook', 'SaveOnSignalHook', 'nonfinite_weights', 'signal_numbers']

# The hooks name the package they are imported from (what logs, reprs and registry listings show).
for _hook in (MMEngineFixesHook, NonFiniteLossHook, ProgressBarHook, RNGStateHook, SaveOnSignalHook):
    _hook.__module__ = __name__
del _hook

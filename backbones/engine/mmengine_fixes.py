"""The fixes this suite puts around MMEngine's Runner, and the one call that installs them.

Importing ``backbones`` patches nothing. The fixes are installed in one place, when a run starts:
``MMEngineFixesHook.before_run`` (``backbones.engine.hooks``), which every config of this repo lists
(``configs/_base_/default_runtime.py``) and ``RobustRunner`` adds when a config does not, so they apply through
``tools/train.py`` / ``tools/test.py`` and through mmseg's / mmdet's own tools alike. Code that reads
checkpoints through MMEngine without a Runner calls ``install_mmengine_fixes()`` (process-wide, idempotent).
Each fix answers a trap of today's stack (the traps and the fixes, one by one:
docs/mmengine_fixes.md): torch's ``weights_only`` loading and MMEngine's pickled logging state (checkpoints
read by the one safe reader, written as plain data), checkpoints written in place (atomic writes), CPU-only
distributed runs and SyncBN (a gloo group started before the Runner, BN on CPU), two runs on one work dir (a
lock), and ``scale_lr`` ignoring gradient accumulation (``RobustRunner.scale_lr``).

The fixes live by concern: ``plain_data`` (``to_plain`` / ``from_plain``), ``checkpoint_io`` (the
checkpoint loaders, atomic writes), ``distributed`` (CPU process group, SyncBN fallback), ``work_dir`` (the
lock); this module installs them and re-exports their names. The other fixes are hooks
(``backbones.engine.hooks.RNGStateHook``: exact resume) and the checks of ``backbones.engine.checks`` and
``backbones.datasets.checks`` that the tools run. The catalogue for users:
docs/mmengine_fixes.md.
"""
from mmengine.fileio import io as mm_io
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.runner.checkpoint import CheckpointLoader

from backbones.engine.checkpoint_io import AtomicLocalBackend, load_local_checkpoint, load_url_checkpoint
from backbones.engine.distributed import (
    fallback_syncbn_on_cpu,
    setup_cpu_distributed,
    slurm_master_addr,
    start_process_group_or_fail,
)
from backbones.engine.plain_data import PLAIN_TAG, from_plain, to_plain
from backbones.engine.work_dir import _LOCKS, lock_work_dir  # noqa: F401 (_LOCKS: for clean-up)

__all__ = ['PLAIN_TAG', 'AtomicLocalBackend', 'fallback_syncbn_on_cpu', 'from_plain',
           'install_mmengine_fixes', 'load_local_checkpoint', 'load_url_checkpoint', 'lock_work_dir',
           'setup_cpu_distributed', 'slurm_master_addr', 'start_process_group_or_fail', 'to_plain']

# What is installed in MMEngine names the module that installs it (what MMEngine's registries report).
for _obj in (AtomicLocalBackend, load_local_checkpoint, load_url_checkpoint):
    _obj.__module__ = __name__
del _obj


def install_mmengine_fixes() -> None:
    """Installs the loaders and the file backend of ``checkpoint_io`` in MMEngine (process-wide; calling again
    is a no-op)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=load_url_checkpoint, force=True)
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    # get_file_backend caches instances: drop local ones made before the swap
    for key, backend in list(mm_io.backend_instances.items()):
        if type(backend) is LocalBackend:
            del mm_io.backend_instances[key]


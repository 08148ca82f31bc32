"""The fixes this suite puts around MMEngine's Runner, and the one call that installs them.

Importing ``backbones`` patches nothing. The fixes are installed when a ``RobustRunner`` is built: the
runner every config of this repo names (``runner_type`` in ``configs/_base_/default_runtime.py``), so
they apply through ``tools/train.py`` /
``tools/test.py`` and through mmseg's / mmdet's own ``tools/train.py`` / ``tools/test.py`` alike. Code
that builds its own Runner calls ``install_mmengine_fixes()`` (process-wide, idempotent) and
``prepare_config(cfg)``. Each fix answers a trap of today's stack:

| trap | fix |
|---|---|
| torch >= 2.6 loads with ``weights_only=True``; a Runner checkpoint pickles MMEngine's ``HistoryBuffer`` (via ``getattr``), so resume and test failed ("Unsupported global"); a full unpickle would run any code a file names | MMEngine's local checkpoint loader reads every file with the suite's one safe reader (``models.weights.read_checkpoint``): torch's weights_only unpickler with ``HistoryBuffer`` (its statistics methods only) and numpy values allow-listed; anything else is refused in one line |
| the same trap in the ecosystem's clients (``init_model``, ``init_detector``, both inferencers, mmseg's / mmdet's analysis tools), which load a checkpoint with torch's default before anything of ours runs | checkpoints are written as plain data (``to_plain``: ``HistoryBuffer`` and numpy values become tagged dicts of tensors and numbers), so ``weights_only=True`` reads them; on resume ``from_plain`` restores the exact objects before MMEngine reads them |
| MMEngine writes checkpoints in place: a kill mid-write left a truncated file under the final name | the local file backend writes a temp file, fsyncs it and renames it over the target (``utils.atomic_write``) |
| without a GPU, the ``pytorch`` / ``slurm`` launchers call ``torch.cuda.set_device`` and DDP gets ``device_ids=[rank]`` | the gloo process group is started before the Runner (MASTER_ADDR from ``scontrol`` under srun; a bounded wait; a torchrun restart's own store prefix), DDP wraps with ``device_ids=None`` |
| ``SyncBatchNorm`` refuses CPU tensors | configs keep SyncBN (right for multi-GPU); CPU runs switch it to BN and say so in the log |
| two training runs started on the same work dir both ran to the end, one's checkpoints and config over the other's | a training run holds a lock on its work dir (``lock_work_dir``); a second one stops with an error naming the first |
| ``Runner.scale_lr`` takes the real batch as world size x batch size and ignores ``accumulative_counts``: the classification recipe's 4096 (8 x 128 x 4 accumulation steps) counted as 1024, lr scaled down 4x | ``RobustRunner.scale_lr`` counts the accumulation steps |

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

